//! pinsight: a camera, an int8 image classifier you train yourself, and GPIO pins.
//!
//! The data flows one way: a frame comes from a camera or a file ([`source`]), is converted to
//! RGB ([`frame`], [`decode`]), run through the frozen backbone and the head ([`model`], the
//! only module that touches tract; it resizes and normalises the image with [`preprocess`]),
//! ranked ([`scores`]) and smoothed into a decision ([`decide`]); [`run`] wires these into the
//! loop, and [`gpio`] shows its results on pins as a [`board`] profile and a deployment config
//! say. Model files are verified against their checksums before anything parses them
//! ([`checksum`]). [`train`] teaches a new head from labelled photos and evaluates it; the run
//! loop never uses it. ARCHITECTURE.md at the top of the repository has the map.

// Every `unsafe` block says why it is sound, naming the `assert!` it rests on.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bench;
pub mod board;
pub mod canvas;
pub mod capture;
pub mod checksum;
pub mod config;
pub mod decide;
pub mod decode;
pub mod durable;
pub mod error;
pub mod frame;
pub mod gpio;
pub mod keep;
pub mod model;
pub mod net;
pub mod notify;
pub mod preprocess;
pub mod run;
pub mod scores;
pub mod source;
pub mod teach;
pub mod train;

pub use error::{Error, Result};

/// How long a blocking wait (for a frame, an edge, the end of a pause) lasts before a stop
/// request is looked at again.
pub const STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

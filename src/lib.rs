//! pinsight: a camera, an int8 image classifier you train yourself, and GPIO pins.
//!
//! The data flows one way: a frame comes from a camera or a file ([`source`]), is converted to
//! RGB ([`frame`]), resized and normalised into the backbone's input ([`preprocess`]), run
//! through the frozen backbone and the head ([`model`], the only module that touches tract),
//! ranked ([`scores`]) and smoothed into a decision ([`decide`]); [`run`] is the loop that ties
//! them together, and [`gpio`] shows its results on pins as a [`board`] profile and a
//! deployment config say. Model files are verified against their checksums before anything parses them
//! ([`checksum`], [`head`]). Away from that loop, [`train`] teaches pinsight new classes from a
//! folder of photos and writes the head folder the loop loads.

pub mod bench;
pub mod board;
pub mod checksum;
pub mod decide;
pub mod error;
pub mod files;
pub mod frame;
pub mod gpio;
pub mod head;
pub mod image_file;
pub mod model;
pub mod preprocess;
pub mod run;
pub mod scores;
pub mod source;
pub mod train;

pub use error::{Error, Result};

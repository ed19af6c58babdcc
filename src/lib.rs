//! pinsight: a camera, an int8 image classifier you train yourself, and GPIO pins.
//!
//! The data flows one way: an image is decoded ([`image_file`]), resized and normalised into the
//! backbone's input ([`preprocess`]), run through the frozen backbone and the head ([`model`],
//! the only module that touches tract), and turned into ranked labels ([`scores`]). Model files
//! are verified against their checksums before anything parses them ([`checksum`], [`head`]).

pub mod checksum;
pub mod error;
pub mod head;
pub mod image_file;
pub mod model;
pub mod preprocess;
pub mod scores;

pub use error::{Error, Result};

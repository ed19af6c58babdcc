//! Teaching on the device (`[enroll]`): a button per class. A press saves a burst of frames as
//! photos of its class (`<photos>/<class>/`, the layout `pinsight` learns from), then a learner
//! trains a new head on every photo of the enroll classes on a thread of its own while the loop
//! goes on with the head it has; the new head is checked, written to the enroll head folder and
//! taken in between two frames, as a reload takes a head ([`super::reload`]).
//!
//! The loop does not know how a head is learnt: it is handed a [`Learn`]er (the command line
//! wires one that runs pinsight's trainer), so that the per-frame path imports no training.
//! Presses while learning save their photos at once and ask for one more round after the
//! running one. Each round ends in one JSON event line ([`EnrollEvent`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::Result;
use crate::board::EnrollSpec;
use crate::gpio::{Press, Presses, Wait};

/// Learns a head from the photos folder and writes it to the enroll head folder.
pub trait Learn: Send + Sync {
    /// Trains on every photo of the enroll classes, unless a class has too few yet. Runs on a
    /// thread of its own; the error is the reason the head was not written (the old one
    /// stays).
    fn learn(&self) -> std::result::Result<Learned, String>;
}

/// What a round of learning did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Learned {
    /// Photos of each enroll class.
    pub photos: BTreeMap<String, usize>,
    /// Classes with fewer photos than a head needs: no head was trained.
    pub too_few: Vec<String>,
    /// Milliseconds spent learning (features and training).
    pub train_ms: f64,
}

/// How a round of learning ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new head is in use.
    Swapped,
    /// A class has too few photos yet; the head in use stays.
    TooFew,
    /// Learning failed; the head in use stays.
    Failed,
    /// The new head was written but refused when loaded; the head in use stays.
    Refused,
}

/// One JSON line a round of learning.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollEvent {
    /// Always `"enrolled"`: what tells this line from a result.
    pub event: &'static str,
    /// When the round ended (RFC 3339, UTC).
    pub time: String,
    /// The classes whose buttons were pressed for this round, in press order.
    pub pressed: Vec<String>,
    /// Photos those presses saved.
    pub saved: usize,
    pub outcome: Outcome,
    /// Why the head in use stays, when it does.
    pub reason: Option<String>,
    /// Photos of each enroll class when the round learnt.
    pub photos: BTreeMap<String, usize>,
    pub train_ms: Option<f64>,
    /// Loading the new head and taking it in.
    pub swap_ms: Option<f64>,
    /// From the round's first press to the new head in use.
    pub press_to_swap_ms: Option<f64>,
}

/// Where a round's event line goes.
pub type Events = dyn FnMut(&EnrollEvent) -> std::io::Result<()> + Send;

/// Everything the loop needs to enroll: the settings, a debounced press source per class, the
/// learner and where the event lines go.
pub struct Enrollment {
    pub photos: PathBuf,
    pub burst: usize,
    pub every: Duration,
    buttons: Mutex<Vec<(String, Presses)>>,
    pub(super) learner: Arc<dyn Learn>,
    events: Mutex<Box<Events>>,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("photos", &self.photos)
            .field("burst", &self.burst)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Enrollment {
    /// `buttons`: each enroll class with the presses of its button.
    pub fn new(
        spec: &EnrollSpec,
        buttons: Vec<(String, Presses)>,
        learner: Arc<dyn Learn>,
        events: Box<Events>,
    ) -> Enrollment {
        Enrollment {
            photos: spec.photos.clone(),
            burst: spec.burst,
            every: spec.every,
            buttons: Mutex::new(buttons),
            learner,
            events: Mutex::new(events),
        }
    }

    /// A press waiting on any button, with its class.
    pub(super) fn pressed(&self) -> Result<Option<(String, Press)>> {
        let mut buttons = self.buttons.lock().unwrap_or_else(|e| e.into_inner());
        for (class, presses) in buttons.iter_mut() {
            if let Wait::Press(press) = presses.wait(Duration::ZERO)? {
                return Ok(Some((class.clone(), press)));
            }
        }
        Ok(None)
    }

    pub(super) fn report(&self, event: &EnrollEvent) -> std::io::Result<()> {
        (self.events.lock().unwrap_or_else(|e| e.into_inner()))(event)
    }
}

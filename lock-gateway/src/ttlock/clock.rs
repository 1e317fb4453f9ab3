//! The injectable clock, shared with access-service.

pub use latchkey::clock::{Clock, ManualClock, SharedClock, SystemClock, system};

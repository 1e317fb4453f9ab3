//! events: placeholder until implemented.

use latchkey::pb::gateway::v1 as pb;
use tonic::{Request, Response, Status};

use crate::state::AppState;

pub async fn watch_device_events(
    _state: &AppState,
    _request: Request<pb::WatchDeviceEventsRequest>,
) -> Result<Response<super::gateway::DeviceEventStream>, Status> {
    Err(Status::unimplemented("watch_device_events"))
}

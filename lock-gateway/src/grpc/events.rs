//! `WatchDeviceEvents`.

use latchkey::auth::Caller;
use latchkey::error::FieldViolations;
use latchkey::pb::gateway::v1 as pb;
use tonic::{Request, Response, Status};

use super::gateway::DeviceEventStream;
use crate::error::Error;
use crate::state::AppState;

pub async fn watch_device_events(
    state: &AppState,
    request: Request<pb::WatchDeviceEventsRequest>,
) -> Result<Response<DeviceEventStream>, Status> {
    let caller = Caller::of(&request)?;
    let after = request.get_ref().after_cursor;
    if after < 0 {
        return Err(Error::from(FieldViolations::single(
            "after_cursor",
            "must be 0 or a cursor this stream sent",
        ))
        .into());
    }
    let stream = crate::events::watch::stream(
        state.pool.clone(),
        &state.announcements,
        caller.tenant_id,
        after,
        state.shutdown.clone(),
    );
    Ok(Response::new(Box::pin(stream)))
}

//! `latchkey.access.v1.EventService`.

use latchkey::auth::Caller;
use latchkey::error::FieldViolations;
use latchkey::pagination;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::event_service_server::EventService;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::events::filter::Filter;
use crate::events::watch::{EventStream, Streams};
use crate::events::{cursor, list, watch};

#[derive(Debug, Clone)]
pub struct EventApi {
    streams: Streams,
}

impl EventApi {
    pub fn new(streams: Streams) -> Self {
        Self { streams }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Reply<Self::WatchEventsStream> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let filter = Filter::new(request.filter.as_ref(), &caller, "filter", &mut violations);
        violations.check().map_err(Error::from)?;
        let mut conn = self.streams.pool.get().await.map_err(Error::from)?;
        let after = list::resolve_start(
            &mut conn,
            &self.streams.keys,
            &caller.tenant_id,
            request.start.as_ref(),
            "start",
        )
        .await?;
        drop(conn);
        Ok(Response::new(watch::stream(
            &self.streams,
            caller.tenant_id,
            filter,
            after,
        )))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Reply<pb::ListEventsResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let filter = Filter::new(request.filter.as_ref(), &caller, "filter", &mut violations);
        let size = pagination::page_size(request.page_size, &mut violations);
        violations.check().map_err(Error::from)?;
        let keys = &self.streams.keys;
        let mut conn = self.streams.pool.get().await.map_err(Error::from)?;
        // A page token is the cursor the previous page ended at.
        let after = if request.page_token.is_empty() {
            list::resolve_start(
                &mut conn,
                keys,
                &caller.tenant_id,
                request.start.as_ref(),
                "start",
            )
            .await?
        } else {
            let start = pb::EventStart {
                position: Some(pb::event_start::Position::AfterCursor(request.page_token)),
            };
            list::resolve_start(
                &mut conn,
                keys,
                &caller.tenant_id,
                Some(&start),
                "page_token",
            )
            .await
            .map_err(|error| match error {
                // The token is the field at fault, not a nested cursor.
                Error::Api(latchkey::error::ApiError::InvalidArgument(_)) => Error::from(
                    FieldViolations::single("page_token", "is not a token this service issued"),
                ),
                other => other,
            })?
        };
        let size = usize::try_from(size).unwrap_or(50);
        let (events, position, at_end) =
            list::page(&mut conn, keys, &caller.tenant_id, &filter, after, size).await?;
        let cursor = cursor::encode(keys, &caller.tenant_id, position);
        Ok(Response::new(pb::ListEventsResponse {
            events,
            next_page_token: if at_end {
                String::new()
            } else {
                cursor.clone()
            },
            cursor,
        }))
    }
}

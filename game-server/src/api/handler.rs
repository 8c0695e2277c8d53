//! Typed handlers and the route table.
//!
//! A handler is a plain async function of the caller's context and the
//! route's own prost message, returning the route's answer message or a
//! [`GameError`]:
//!
//! ```ignore
//! async fn join(ctx: Ctx, req: JoinRequest) -> Result<JoinResponse, GameError>
//! ```
//!
//! Registering it erases its types once ([`erase`]): the erased handler
//! decodes the payload into the request message *before* the function
//! runs (a payload that does not decode is `BAD_PAYLOAD` and the handler
//! never sees it) and encodes the answer. The [`RouteTable`] is data: a
//! map from route name to erased handler, filled by modules at start-up;
//! dispatching is one lookup, with no `match` anywhere that knows a route.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use gamemesh_proto::client::{client_packet, server_packet};
use prost::Message;

use super::context::Ctx;
use super::error::{BuildError, GameError};
use super::route::RouteName;

/// A handler with its types erased: context and payload in, encoded
/// answer out.
pub(crate) type ErasedHandler =
    Arc<dyn Fn(Ctx, Bytes) -> BoxFuture<'static, Result<Bytes, GameError>> + Send + Sync>;

/// The last path segment of a type's name, for error details.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Wraps `handler` of `route`: decode `Req`, run, encode `Resp`.
pub(crate) fn erase<Req, Resp, F, Fut>(route: &RouteName, handler: F) -> ErasedHandler
where
    Req: Message + Default + Send + 'static,
    Resp: Message + 'static,
    F: Fn(Ctx, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, GameError>> + Send + 'static,
{
    let route = route.clone();
    Arc::new(move |ctx, payload| match Req::decode(payload) {
        Err(e) => {
            let detail = format!(
                "{route}: the payload is not a {}: {e}",
                short_type_name::<Req>()
            );
            Box::pin(std::future::ready(Err(GameError::BadPayload(detail))))
        }
        Ok(req) => {
            let answer = handler(ctx, req);
            Box::pin(async move { answer.await.map(|r| Bytes::from(r.encode_to_vec())) })
        }
    })
}

/// One registered route.
#[derive(Clone)]
pub(crate) struct RouteEntry {
    /// The module that registered it.
    pub(crate) module: Arc<str>,
    /// Its handler.
    pub(crate) handler: ErasedHandler,
}

/// Route name -> handler, built once at start-up and only read after.
#[derive(Clone, Default)]
pub(crate) struct RouteTable {
    /// The routes.
    routes: HashMap<RouteName, RouteEntry>,
}

impl RouteTable {
    /// Adds `route`; a route registered twice is a start-up error.
    pub(crate) fn insert(&mut self, route: RouteName, entry: RouteEntry) -> Result<(), BuildError> {
        if self.routes.contains_key(&route) {
            return Err(BuildError::DuplicateRoute(route.to_string()));
        }
        self.routes.insert(route, entry);
        Ok(())
    }

    /// The entry for `route` as a client sent it; `None` for a route that
    /// breaks the naming rule or has no handler (both `UNKNOWN_ROUTE`).
    pub(crate) fn get(&self, route: &str) -> Option<&RouteEntry> {
        self.routes.get(&RouteName::parse(route)?)
    }

    /// Every route, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.routes.keys().map(|r| r.to_string()).collect();
        names.sort();
        names
    }
}

/// A handler of a body of the client contract itself (echo, chat, ...)
/// with its types erased: `None` when the body is not its own.
pub(crate) type ErasedBody = Arc<
    dyn Fn(
            Ctx,
            &client_packet::Body,
        ) -> Option<BoxFuture<'static, Result<server_packet::Body, GameError>>>
        + Send
        + Sync,
>;

/// Wraps a handler of a contract body: `extract` picks its request out
/// of a `ClientPacket` body, `wrap` puts its answer into a `ServerPacket`
/// body.
pub(crate) fn erase_body<Req, Resp, F, Fut>(
    extract: fn(&client_packet::Body) -> Option<Req>,
    wrap: fn(Resp) -> server_packet::Body,
    handler: F,
) -> ErasedBody
where
    Req: Send + 'static,
    Resp: 'static,
    F: Fn(Ctx, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, GameError>> + Send + 'static,
{
    Arc::new(move |ctx, body| {
        let req = extract(body)?;
        let answer = handler(ctx, req);
        Some(Box::pin(async move { answer.await.map(wrap) }))
    })
}

/// One registered contract body.
#[derive(Clone)]
pub(crate) struct BodyEntry {
    /// Its name (`"<module>.<name>"`, for logs and metrics).
    pub(crate) name: RouteName,
    /// The module that registered it.
    pub(crate) module: Arc<str>,
    /// Its handler.
    pub(crate) handler: ErasedBody,
}

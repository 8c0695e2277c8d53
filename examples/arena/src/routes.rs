//! The arena's routes. Each checks what it can without the room (the
//! room name, the step) and then asks the caller's room, wherever in the
//! cluster it runs.

use gamemesh_game_server::api::prelude::*;

use crate::proto::{
    JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, MoveRequest, MoveResponse,
};
use crate::room::ArenaRoom;
use crate::rules;

/// `arena.join`: joins (or creates) the room; a session in another arena
/// leaves it. Joining the room it is in answers its position.
pub async fn join(ctx: Ctx, req: JoinRequest) -> Result<JoinResponse, GameError> {
    if !rules::valid_room(&req.room) {
        return Err(refuse(
            "a room name is 1 to 32 bytes of A-Z, a-z, 0-9, '_' and '-'",
        ));
    }
    ctx.rooms::<ArenaRoom>().join(&req.room).await
}

/// `arena.move`: one step in the caller's arena; the answer is where the
/// player is now.
pub async fn move_player(ctx: Ctx, req: MoveRequest) -> Result<MoveResponse, GameError> {
    if !rules::valid_step(req.dx, req.dy) {
        return Err(refuse("dx and dy must each be -1, 0 or 1"));
    }
    let rooms = ctx.rooms::<ArenaRoom>();
    let room = rooms
        .current()
        .await?
        .ok_or_else(|| refuse("not in an arena; join one first"))?;
    rooms.send(&room, &req).await
}

/// `arena.leave`: leaves the caller's arena (nothing to do if it is in
/// none).
pub async fn leave(ctx: Ctx, _req: LeaveRequest) -> Result<LeaveResponse, GameError> {
    let rooms = ctx.rooms::<ArenaRoom>();
    if let Some(room) = rooms.current().await? {
        rooms.leave(&room).await?;
    }
    Ok(LeaveResponse {})
}

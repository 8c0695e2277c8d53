/**
 * The game-route API (`call(route, payload)`, `onPush(route)`) against a
 * real arena-server: the arena sample's routes (PROTOCOL.md "The sample
 * game: arena"), over TCP, through the same ArenaPlayer the browser page
 * uses.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Client, ErrorCode, ServerError, type Connect } from "../src/index.js";
import { tcpTransport } from "../src/tcp.js";
import { ArenaPlayer, boardView, type BoardView } from "../web/arena.js";
import { JoinRequestSchema, JoinResponseSchema, MoveRequestSchema, StateSchema, type State } from "../web/gen/arena_pb.js";
import { Cluster } from "./cluster.js";

let cluster: Cluster;
let nextUser = 7000n;
const tcp = (): Connect => tcpTransport({ host: "127.0.0.1", port: cluster.clientPort });
const login = (userId: bigint) => Client.connect(tcp(), { userId, token: "dev" });

before(async () => { cluster = await Cluster.start({ gameServer: "arena-server" }); });
after(() => cluster?.stop());

/** Resolves with the first state `player` receives that passes `check`; rejects after `timeoutMs`. */
function stateWhere(player: ArenaPlayer, check: (view: BoardView) => boolean, timeoutMs = 5000): Promise<State> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (stop(), reject(new Error(`no such state within ${timeoutMs} ms; last: ${JSON.stringify(player.latest && boardView(player.latest))}`))), timeoutMs);
    const stop = player.onState((state) => {
      if (check(boardView(state))) (clearTimeout(timer), stop(), resolve(state));
    });
  });
}

const at = (view: BoardView, user: bigint) => view.players.find((p) => p.userId === user.toString());

test("call arena.join answers the JoinResponse, and onPush delivers arena.state ticks in order", async () => {
  const user = nextUser++;
  const client = await login(user);
  try {
    const ticks: bigint[] = [];
    const enough = new Promise<void>((resolve) =>
      client.onPush("arena.state", (payload) => {
        ticks.push(fromBinary(StateSchema, payload).tick);
        if (ticks.length === 10) resolve();
      }));
    const reply = await client.call("arena.join", toBinary(JoinRequestSchema, create(JoinRequestSchema, { room: `ts-join-${user}` })));
    const joined = fromBinary(JoinResponseSchema, reply);
    assert.deepEqual([joined.room, joined.tickHz, joined.x, joined.y], [`ts-join-${user}`, 20, 0, 0]);
    await enough;
    for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i], ticks[i - 1] + 1n, `ticks ${ticks.join(",")}`);
  } finally { await client.close(); }
});

test("two players in one room: a move of one shows in the other's states", async () => {
  const [ua, ub] = [nextUser++, nextUser++];
  const room = `ts-pair-${ua}`;
  const a = new ArenaPlayer(await login(ua));
  const b = new ArenaPlayer(await login(ub));
  try {
    await a.join(room);
    await b.join(room);
    await stateWhere(b, (v) => at(v, ua) !== undefined && at(v, ub) !== undefined);
    assert.deepEqual(await a.move("right"), { x: 1, y: 0 });
    assert.deepEqual(await a.move("down"), { x: 1, y: 1 });
    const seen = await stateWhere(b, (v) => at(v, ua)?.x === 1 && at(v, ua)?.y === 1);
    assert.equal(seen.room, room);
    assert.deepEqual(await a.move("up"), { x: 1, y: 0 });
    assert.deepEqual(await a.move("left"), { x: 0, y: 0 });
    assert.deepEqual(await a.move("left"), { x: 0, y: 0 }, "a move off the board is clamped");
  } finally { await a.client.close(); await b.client.close(); }
});

test("onPush's unsubscribe stops one listener, not the others", async () => {
  const user = nextUser++;
  const client = await login(user);
  try {
    let first = 0;
    let second = 0;
    const stopFirst = client.onPush("arena.state", () => first++);
    const fiveMore = new Promise<void>((resolve) => client.onPush("arena.state", () => { if (++second === 5) resolve(); }));
    await client.call("arena.join", toBinary(JoinRequestSchema, create(JoinRequestSchema, { room: `ts-unsub-${user}` })));
    await fiveMore;
    stopFirst();
    const before = first;
    const tenMore = new Promise<void>((resolve) => client.onPush("arena.state", () => { if (++second >= 15) resolve(); }));
    await tenMore;
    assert.ok(before >= 5, `the first listener got ${before} states while it listened`);
    assert.equal(first, before, "the unsubscribed listener still got states");
  } finally { await client.close(); }
});

test("game-route errors are typed, and the session goes on: UNKNOWN_ROUTE, REFUSED", async () => {
  const user = nextUser++;
  const player = new ArenaPlayer(await login(user));
  const refused = (detail: string) => (e: unknown) => e instanceof ServerError && e.code === ErrorCode.REFUSED && e.detail.includes(detail);
  try {
    await assert.rejects(player.client.call("arena.nope"), (e: unknown) => e instanceof ServerError && e.code === ErrorCode.UNKNOWN_ROUTE);
    await assert.rejects(player.client.call("Not A Route"), (e: unknown) => e instanceof ServerError && e.code === ErrorCode.UNKNOWN_ROUTE);
    await assert.rejects(player.move("right"), refused("join one first"));
    await player.join(`ts-errors-${user}`);
    const tooFar = toBinary(MoveRequestSchema, create(MoveRequestSchema, { dx: 2, dy: 0 }));
    await assert.rejects(player.client.call("arena.move", tooFar), refused("dx and dy"));
    assert.deepEqual(await player.move("right"), { x: 1, y: 0 });
  } finally { await player.client.close(); }
});

/** The TypeScript client against a real cluster (test/cluster.ts), over TCP. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Client, ErrorCode, KickReason, KickedError, RequestTimeout, ServerError, type Connect } from "../src/index.js";
import { ServerPacketSchema } from "../src/gen/client_pb.js";
import { tcpTransport } from "../src/tcp.js";
import { webSocketTransport } from "../src/websocket.js";
import { Cluster } from "./cluster.js";

let cluster: Cluster;
let nextUser = 5000n;
const tcp = (): Connect => tcpTransport({ host: "127.0.0.1", port: cluster.clientPort });
const login = (userId: bigint, connect: Connect = tcp()) => Client.connect(connect, { userId, token: "dev" });
const bytes = (s: string) => new TextEncoder().encode(s);

before(async () => { cluster = await Cluster.start(); });
after(() => cluster?.stop());

test("login and echo", async () => {
  const client = await login(nextUser++);
  try {
    assert.notEqual(client.session!.sessionId, 0n);
    assert.deepEqual(await client.echo(bytes("hello")), bytes("hello"));
    assert.equal(client.nextSequenceId(), 3n); // login 1, echo 2
  } finally { await client.close(); }
});

test("login and echo over WebSocket", async () => {
  // Node 22 has a global WebSocket; Node 20 needs --experimental-websocket
  // (package.json's test script passes it).
  assert.ok(globalThis.WebSocket, "no global WebSocket: run node with --experimental-websocket (Node 20) or use Node >= 22");
  const ws = webSocketTransport(`ws://127.0.0.1:${cluster.wsPort}/`);
  const client = await login(nextUser++, ws);
  try {
    assert.notEqual(client.session!.sessionId, 0n);
    assert.deepEqual(await client.echo(bytes("hello over ws")), bytes("hello over ws"));
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => client.echo(bytes(`echo ${i}`))));
    many.forEach((echoed, i) => assert.deepEqual(echoed, bytes(`echo ${i}`)));
  } finally { await client.close(); }
});

test("a duplicate sequence id is answered from the cache", async () => {
  const client = await login(nextUser++);
  try {
    const first = client.nextSequenceId();
    assert.equal(await client.increment(), 1n);
    assert.equal(await client.increment({ sequenceId: first }), 1n);
    assert.equal(await client.increment(), 2n);
  } finally { await client.close(); }
});

test("a request whose reply is lost with the connection runs exactly once", async () => {
  // A transport that, once armed, swallows the reply to one sequence id and
  // kills the connection: the server surely ran the request, the client
  // never saw the answer. Re-sending with a new id would answer 3, not 2.
  let dropReplyTo: bigint | undefined;
  let active: { close(): void } | undefined;
  const inner = tcp();
  const faulty: Connect = async (handlers) => {
    const t = await inner({
      message: (body) => {
        if (dropReplyTo !== undefined && fromBinary(ServerPacketSchema, body).sequenceId === dropReplyTo) {
          dropReplyTo = undefined;
          active?.close();
          return;
        }
        handlers.message(body);
      },
      closed: handlers.closed,
    });
    active = t;
    return t;
  };
  const client = await login(nextUser++, faulty);
  try {
    assert.equal(await client.increment(), 1n);
    dropReplyTo = client.nextSequenceId();
    assert.equal(await client.increment(), 2n, "the re-sent increment ran twice (or never)");
    assert.equal(client.resumes, 1);
    assert.equal(client.resentRequests, 1);
    assert.equal(await client.increment(), 3n);
  } finally { await client.close(); }
});

test("a duplicate login kicks the first client, as an event", async () => {
  const user = nextUser++;
  const first = await login(user);
  const kicked = new Promise<KickedError>((resolve) => first.on("kicked", resolve));
  const closed = new Promise((resolve) => first.on("closed", resolve));
  const second = await login(user);
  try {
    assert.equal((await kicked).reason, KickReason.DUPLICATE_LOGIN);
    assert.ok((await closed) instanceof KickedError);
    await assert.rejects(first.echo(bytes("late")), KickedError);
    assert.deepEqual(await second.echo(bytes("here")), bytes("here"));
  } finally { await first.close(); await second.close(); }
});

test("pushes arrive as events", async () => {
  const user = nextUser++;
  const listener = await login(user);
  const speaker = await login(user + 100_000n);
  const room = `ts-${user}`;
  try {
    const said = new Promise<string>((resolve) =>
      listener.on("push", (p) => { if (p.body.case === "chatMessage") resolve(p.body.value.text); }));
    await listener.request({ case: "chatJoin", value: { room } });
    await speaker.request({ case: "chatJoin", value: { room } });
    await speaker.request({ case: "chatSay", value: { room, text: "hi" } });
    assert.equal(await said, "hi");
  } finally { await listener.close(); await speaker.close(); }
});

test("a request without an answer times out", async () => {
  const client = await login(nextUser++);
  try {
    await cluster.pauseGameServer();
    try {
      await assert.rejects(client.echo(bytes("void"), { timeoutMs: 300 }), RequestTimeout);
    } finally { cluster.resumeGameServer(); }
    assert.deepEqual(await client.echo(bytes("back")), bytes("back"));
  } finally { await client.close(); }
});

test("errors are typed", async () => {
  const client = await login(nextUser++);
  try {
    await assert.rejects(client.request({ case: "chatSay", value: { room: "not-joined", text: "x" } }),
      (err: unknown) => err instanceof ServerError && err.code === ErrorCode.NOT_IN_ROOM);
    await assert.rejects(login(0n), (err: unknown) => err instanceof ServerError && err.code === ErrorCode.INVALID_TOKEN);
  } finally { await client.close(); }
});

test("heartbeats go out by themselves", async () => {
  const client = await Client.connect(tcp(), { userId: nextUser++, token: "dev", heartbeatIntervalMs: 50 });
  try {
    const deadline = Date.now() + 4000;
    while (client.lastRttMs === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.notEqual(client.lastRttMs, undefined, "no heartbeat reply within 4 s");
  } finally { await client.close(); }
});

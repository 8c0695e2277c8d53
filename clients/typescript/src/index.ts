/** gamemesh client (browser and Node). The TCP transport is in "@gamemesh/client/tcp" (Node only). */
export { Client, type ClientOptions, type LoginOptions, type RequestOptions, type Session } from "./client.js";
export * from "./errors.js";
export { encodeFrame, FrameDecoder, FrameError, DEFAULT_MAX_FRAME } from "./framing.js";
export type { Connect, Transport, TransportHandlers } from "./transport.js";
export { webSocketTransport, type WebSocketOptions } from "./websocket.js";
export * as proto from "./gen/client_pb.js";
export { ErrorCode, KickReason } from "./gen/client_pb.js";

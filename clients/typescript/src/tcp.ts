/** The TCP transport, for Node (node:net). Import from "@gamemesh/client/tcp". */
import * as net from "node:net";
import { DEFAULT_MAX_FRAME, FrameDecoder, encodeFrame } from "./framing.js";
import type { Connect, Transport } from "./transport.js";

export interface TcpOptions {
  host: string;
  port: number;
  maxFrame?: number;
}

/** Connects to a gateway's client port (5000 by default). */
export function tcpTransport(options: TcpOptions): Connect {
  return (handlers) =>
    new Promise<Transport>((resolve, reject) => {
      const socket = net.connect({ host: options.host, port: options.port, noDelay: true });
      const decoder = new FrameDecoder(options.maxFrame ?? DEFAULT_MAX_FRAME);
      let open = false;
      let failure: Error | undefined;
      socket.once("connect", () => {
        open = true;
        resolve({
          send: (body) => void socket.write(encodeFrame(body)),
          close: () => void socket.destroy(),
        });
      });
      socket.on("data", (chunk) => {
        let bodies: Uint8Array[];
        try {
          bodies = decoder.push(chunk);
        } catch (err) {
          socket.destroy(err as Error);
          return;
        }
        for (const body of bodies) handlers.message(body);
      });
      socket.on("error", (err) => {
        failure = err;
        if (!open) reject(err);
      });
      socket.on("close", () => {
        if (open) handlers.closed(failure);
      });
    });
}

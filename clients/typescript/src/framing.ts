/** Length-prefixed frames (PROTOCOL.md section 1): a big-endian u32 body length, then the body. */

/** The gateway's default --max-frame-bytes. */
export const DEFAULT_MAX_FRAME = 65_536;

export class FrameError extends Error {}

export function encodeFrame(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length, false);
  frame.set(body, 4);
  return frame;
}

/** Cuts a byte stream into bodies, however it was split into chunks. */
export class FrameDecoder {
  private buffer = new Uint8Array(0);

  constructor(private readonly maxFrame = DEFAULT_MAX_FRAME) {}

  /** Adds a chunk; returns the bodies it completed. Throws FrameError on a forbidden length. */
  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    const bodies: Uint8Array[] = [];
    let at = 0;
    while (joined.length - at >= 4) {
      const length = new DataView(joined.buffer, joined.byteOffset + at, 4).getUint32(0, false);
      if (length === 0 || length > this.maxFrame) {
        throw new FrameError(`frame length ${length} outside 1..=${this.maxFrame}`);
      }
      if (joined.length - at - 4 < length) break;
      bodies.push(joined.slice(at + 4, at + 4 + length));
      at += 4 + length;
    }
    this.buffer = joined.slice(at);
    return bodies;
  }
}

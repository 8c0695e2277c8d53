/**
 * The arena in a browser, end to end: redis-server, arena-server, a gateway
 * with --ws-port and `test-client web` (test/cluster.ts), and two headless
 * Chromium pages (the Debian `chromium` package driven by puppeteer-core)
 * playing in one room over WebSocket. One player moves with the arrow keys;
 * the other page must draw the move, then drop the player when it leaves. The pages mirror what they drew into
 * window.arenaView, so every wait below is for a condition, never a sleep.
 * A screenshot of the watching page is kept at target/artifacts/arena-browser.png.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import * as path from "node:path";
import { after, before, test } from "node:test";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { Cluster, REPO } from "./cluster.js";

const PAGE_DIR = path.join(REPO, "clients", "typescript", "dist", "browser");
const ARTIFACTS = path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, "target"), "artifacts");
const WAIT_MS = 15_000;
/**
 * How often a page re-checks a wait's condition. Not puppeteer's default
 * (every animation frame): a page behind another gets no animation frames,
 * so its condition would never be checked again.
 */
const POLL_MS = 20;

/** CHROMIUM, else the first of the usual Debian/Ubuntu paths that exists. */
function chromium(): string {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
  const found = candidates.find((c): c is string => !!c && existsSync(c));
  if (!found) throw new Error("no Chromium: apt-get install chromium (or set CHROMIUM to a Chrome/Chromium binary); ./scripts/test.sh installs it");
  return found;
}

let cluster: Cluster;
let browser: Browser;
let url: string;

before(async () => {
  cluster = await Cluster.start({ gameServer: "arena-server", web: true });
  url = await cluster.serveWeb(PAGE_DIR);
  browser = await puppeteer.launch({
    executablePath: chromium(),
    headless: true,
    // Chromium's sandbox refuses to run as root (CI containers).
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
});

after(async () => {
  await browser?.close();
  cluster?.stop();
});

interface Seen {
  status: string;
  tick?: number;
  players?: { userId: string; x: number; y: number }[];
}

/** Opens the page, fills in the login form and waits until the page plays. */
async function joined(user: number, room: string): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  await page.goto(url, { waitUntil: "load" });
  await page.locator("#user").fill(String(user));
  await page.locator("#room").fill(room);
  await page.click("#join");
  await page
    .waitForFunction(() => (window as unknown as { arenaView?: Seen }).arenaView?.status === "playing", { timeout: WAIT_MS, polling: POLL_MS })
    .catch(async (err: Error) => {
      throw new Error(`user ${user} never started playing: ${await statusOf(page)} ${errors.join("; ")} (${err.message}); logs in ${cluster.logs}`);
    });
  return page;
}

const statusOf = (page: Page) => page.$eval("#status", (el) => el.textContent ?? "");

/** Waits until `page` has drawn `user` at (x, y); answers what it drew. */
async function drawnAt(page: Page, user: number, x: number, y: number): Promise<Seen> {
  await page
    .waitForFunction(
      (u: string, x: number, y: number) =>
        (window as unknown as { arenaView?: Seen }).arenaView?.players?.some((p) => p.userId === u && p.x === x && p.y === y),
      { timeout: WAIT_MS, polling: POLL_MS },
      String(user),
      x,
      y,
    )
    .catch(async () => {
      throw new Error(`the page never drew user ${user} at (${x}, ${y}); it shows: ${await statusOf(page)} ${JSON.stringify(await view(page))}`);
    });
  return view(page);
}

const view = (page: Page) => page.evaluate(() => (window as unknown as { arenaView: Seen }).arenaView);

/** The canvas pixel at the centre of board cell (x, y), as [r, g, b]. */
const pixelAt = (page: Page, x: number, y: number) =>
  page.$eval(
    "#board",
    (canvas, x, y) => {
      const cell = (canvas as HTMLCanvasElement).width / 100;
      const data = (canvas as HTMLCanvasElement).getContext("2d")!.getImageData(x * cell + cell / 2, y * cell + cell / 2, 1, 1).data;
      return [data[0], data[1], data[2]];
    },
    x,
    y,
  );

test("two pages in one room: arrow keys move one player, the other page draws the move and the leave", async () => {
  const started = Date.now();
  const [mover, watcher] = [4001 + (started % 1000), 5001 + (started % 1000)];
  const room = `browser-${started % 100000}`;
  const a = await joined(mover, room);
  const b = await joined(watcher, room);
  await drawnAt(b, mover, 0, 0);
  const background = await pixelAt(b, 50, 50);

  await a.bringToFront();
  const keys = [...Array(8).fill("ArrowRight"), ...Array(5).fill("ArrowDown")] as const;
  for (const key of keys) await a.keyboard.press(key);

  const seen = await drawnAt(b, mover, 8, 5);
  assert.ok(seen.players!.some((p) => p.userId === String(watcher)), "the watcher is on its own board");
  assert.notDeepEqual(await pixelAt(b, 8, 5), background, "the watcher's canvas has nothing drawn at (8, 5)");
  await drawnAt(a, mover, 8, 5);
  const status = await statusOf(b);
  assert.match(status, new RegExp(`user-${watcher} in room ${room} \\| tick \\d+ \\| 2 player\\(s\\)`));

  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, "arena-browser.png");
  await b.screenshot({ path: shot as `${string}.png`, fullPage: true });
  const moved = Date.now() - started;

  // Leave: the other page drops the player. (A click goes to the page in
  // front: puppeteer's click on a page behind another loses the browser.)
  await a.bringToFront();
  await a.click("#leave");
  await b
    .waitForFunction(
      (u: string) => {
        const players = (window as unknown as { arenaView?: Seen }).arenaView?.players;
        return players !== undefined && players.length === 1 && players[0].userId !== u;
      },
      { timeout: WAIT_MS, polling: POLL_MS },
      String(mover),
    )
    .catch(async () => {
      throw new Error(`the watcher still shows the player who left: ${JSON.stringify(await view(b))}`);
    });
  assert.equal((await view(a)).status, "closed");
  console.log(`screenshot: ${shot}; joined, moved and seen in ${moved} ms, left and seen in ${Date.now() - started - moved} ms`);
});

// The cockpit's frame budget (issue 28, item 4): frames per second while panning the
// overview at 1920x1080 in Debian's Chromium without a GPU (SwiftShader), with the network
// drawn and with nothing drawn, in the same page and run; the ratio of their frame times is
// what citybrain adds to the browser's own cost. Run by bench/frames/run (which says how).
//
//   node bench/frames/frames.mjs BIN OUT.json [label] [up args...]

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const { chromium } = await import(join(here, '../../cockpit/node_modules/playwright-core/index.mjs'));
const [bin, outFile, label, ...upArgs] = process.argv.slice(2);
const RUNS = Number(process.env.RUNS ?? 3);
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const data = mkdtempSync(join(tmpdir(), 'citybrain-frames-'));
const child = spawn(bin, ['up', '--listen', '127.0.0.1:0', '--data', data, ...upArgs], {
  env: { ...process.env, CITYBRAIN_LOG: 'warn' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
process.on('exit', () => child.kill('SIGKILL'));
const lines = createInterface({ input: child.stdout });
const base = await new Promise((resolve, reject) => {
  child.on('exit', (code) => reject(new Error(`citybrain up exited with ${code}`)));
  lines.on('line', (l) => {
    const m = l.match(/^citybrain is up on (http:\/\/\S+?)\/? /);
    if (m) resolve(m[1]);
  });
});
const token = readFileSync(join(data, 'cockpit.token'), 'utf8').trim();
// Measure a quiet server: wait on every scene's watermark until it has applied what is
// stored (a demo day loads whole, then the scenes catch up over it).
const admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
for (const started = Date.now(); ; ) {
  const { scenes } = await (await fetch(`${base}/api/v1/scenes`, { headers: { Authorization: `Bearer ${admin}` } })).json();
  const behind = scenes.filter((s) => (s.feed ?? []).some((f) => f.head != null && (f.applied ?? -1) < f.head));
  if (!behind.length) break;
  if (Date.now() - started > 600_000) throw new Error(`scenes still behind after 10 minutes: ${behind.map((s) => s.name)}`);
  await new Promise((r) => setTimeout(r, 500));
}
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--enable-unsafe-swiftshader', '--disable-background-networking', '--disable-component-update'],
});
const page = await (await browser.newContext({ viewport: { width: 1920, height: 1080 } })).newPage();
page.on('pageerror', (e) => console.error('page error:', e.message));
const opened = Date.now();
await page.goto(`${base}/#token=${token}`);
await page.waitForSelector('main[data-ready=true]', { timeout: 120000 });
const paint = await page.evaluate(() => ({
  fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
  ready: performance.getEntriesByName('cockpit-map-ready')[0]?.startTime ?? null,
  links: window.cockpit.network.links.features.length,
}));
paint.wall_ms = Date.now() - opened;

/** One measurement in the page: `links` null hides the network; a number draws that many
 * (copies of the real links, shifted, past the network's own); `onward` pans on in one
 * direction (new ground, new pictures) instead of back and forth. */
const measure = (how) =>
  page.evaluate(async ({ links, onward }) => {
    const { map, network, cityMap } = window.cockpit;
    const layer = cityMap.network;
    const own = network.links.features.map((f) => ({ id: Number(f.id), coordinates: f.geometry.coordinates }));
    layer.setVisible(links !== null);
    let redrawMs = null;
    if (links && links > own.length) {
      const more = [];
      for (let i = 0; more.length < links - own.length; i++) {
        const f = own[i % own.length];
        const d = 0.0006 * (Math.floor(i / own.length) + 1);
        more.push({ id: 1_000_000 + i, coordinates: f.coordinates.map(([x, y]) => [x + d, y + d]) });
      }
      layer.setLinks([...own, ...more]);
    }
    if (links !== null) {
      // A new picture's cost, to the next frame (recording and rasterising).
      const t0 = performance.now();
      layer.redraw();
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      redrawMs = performance.now() - t0;
    }
    const drawn = links === null ? 0 : layer.drawnLinks;
    let redraws = 0;
    const redraw = layer.redraw;
    layer.redraw = function () {
      redraws++;
      return redraw.call(this);
    };
    let frames = 0;
    let running = true;
    const tick = () => {
      frames++;
      if (running) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    const started = performance.now();
    for (const dx of onward ? [300, 300, 300, 300] : [300, -300, 300, -300]) {
      map.panBy([dx, dx / 3], { duration: 1000, easing: (t) => t });
      await new Promise((r) => map.once('moveend', r));
    }
    running = false;
    const seconds = (performance.now() - started) / 1000;
    layer.redraw = redraw;
    if (onward) {
      map.panBy([-1200, -400], { duration: 0 });
      await new Promise((r) => requestAnimationFrame(r));
    }
    if (links && links > own.length) layer.setLinks(own);
    layer.setVisible(true);
    return { fps: frames / seconds, drawn, redraws, redraw_ms: redrawMs };
  }, how);

const cases = [
  ['empty', { links: null, onward: false }],
  ['network', { links: 0, onward: false }],
  ...(paint.links < 5000 ? [['links_5000', { links: 5000, onward: false }]] : []),
  ['empty_onward', { links: null, onward: true }],
  ['network_onward', { links: 0, onward: true }],
];
// A first pan warms the page up (JIT, caches); it is not counted.
await measure({ links: 0, onward: false });
const runs = [];
for (let run = 0; run < RUNS; run++) {
  const row = {};
  for (const [name, how] of cases) row[name] = await measure(how);
  runs.push(row);
  const ratio = (a, b) => (row[b].fps / row[a].fps).toFixed(2);
  console.log(
    `${label} run ${run + 1}: empty ${row.empty.fps.toFixed(1)} fps, network (${row.network.drawn} links) ${row.network.fps.toFixed(1)} fps = ${ratio('network', 'empty')}x` +
      (row.links_5000 ? `, 5,000 links ${row.links_5000.fps.toFixed(1)} fps = ${ratio('links_5000', 'empty')}x` : '') +
      `; onward: ${row.empty_onward.fps.toFixed(1)} / ${row.network_onward.fps.toFixed(1)} fps = ${ratio('network_onward', 'empty_onward')}x (${row.network_onward.redraws} new pictures, ${Math.round(row.network.redraw_ms)} ms each)`,
  );
}
let version = '';
try {
  version = execFileSync(CHROMIUM, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch {}
writeFileSync(outFile, JSON.stringify({ label, up: upArgs, chromium: version, viewport: '1920x1080', paint, runs }, null, 2) + '\n');
await browser.close();
child.kill('SIGTERM');
rmSync(data, { recursive: true, force: true });

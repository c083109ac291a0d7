// clusterlens review: the map. Every item is a dot, drawn in one pass into an
// ImageData from typed arrays (coordinates fetched as uint16 pairs, colours as
// uint16 codes): 100,000 dots draw in a few milliseconds, so panning and
// zooming redraw the whole map on every animation frame.
"use strict";
(function () {
  const cl = window.clusterlens;
  const canvas = document.getElementById("map-canvas");
  const wrap = document.getElementById("mapwrap");
  const tip = document.getElementById("map-tip");
  const tipImg = document.getElementById("map-tip-img");
  const tipText = document.getElementById("map-tip-text");
  const legendEl = document.getElementById("map-legend");
  const selN = document.getElementById("sel-n");
  const colourSel = document.getElementById("map-colour");
  const ctx = canvas.getContext("2d");
  const stats = { draws: 0, drawMs: [], loadMs: 0, bytes: 0, n: 0 };
  window.__mapStats = stats;

  // 20 colours that stay apart on light and dark backgrounds (Tableau 10, then
  // d3's category10 and two more; no greys: grey is "nothing" here)
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#6b6ecf", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
    "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#8ca252",
  ];
  const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  const MUTED = dark ? "#4b5563" : "#c3c8cf";
  const SELECTED = dark ? "#ffffff" : "#111827";
  function rgba(hex) {  // "#rrggbb" -> the Uint32 of an ImageData pixel (little-endian ABGR)
    const v = parseInt(hex.slice(1), 16);
    return ((255 << 24) | ((v & 0xff) << 16) | (v & 0xff00) | (v >> 16)) >>> 0;
  }
  const bgHex = getComputedStyle(document.documentElement).getPropertyValue("--card").trim() || "#ffffff";

  let n = 0, X = null, Y = null;          // world coordinates in [0, 1], y up
  let codes = null, legend = [], table = new Uint32Array(1);
  let sel = null, nSel = 0;
  let view = { cx: 0.5, cy: 0.5, scale: 1 };  // screen px per world unit (CSS px)
  let W = 0, H = 0, dpr = 1;
  let tool = "pan";
  let pending = false;
  let gridIdx = null;                     // the hover index: a uniform grid
  const G = 256;

  function fit() {
    const r = wrap.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    W = Math.max(1, Math.floor(r.width)); H = Math.max(1, Math.floor(r.height));
    canvas.width = Math.floor(W * dpr); canvas.height = Math.floor(H * dpr);
    canvas.style.width = W + "px"; canvas.style.height = H + "px";
  }
  function home() {
    const pad = 24;
    view = { cx: 0.5, cy: 0.5, scale: Math.max(1, Math.min(W, H) - 2 * pad) };
  }
  const sx = (x) => (x - view.cx) * view.scale + W / 2;
  const sy = (y) => H / 2 - (y - view.cy) * view.scale;
  const wx = (px) => (px - W / 2) / view.scale + view.cx;
  const wy = (py) => view.cy - (py - H / 2) / view.scale;

  function request() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }

  const stamps = {};
  function stamp(d) {  // the pixel offsets of a disc of diameter d
    if (stamps[d]) return stamps[d];
    const dx = [], dy = [], r = d / 2, c = (d - 1) / 2;
    for (let y = 0; y < d; y++) {
      for (let x = 0; x < d; x++) {
        if (d <= 2 || (x - c) ** 2 + (y - c) ** 2 <= r * r) { dx.push(x - Math.floor(c)); dy.push(y - Math.floor(c)); }
      }
    }
    stamps[d] = { dx: Int32Array.from(dx), dy: Int32Array.from(dy), ext: d };
    return stamps[d];
  }

  function put(px, w, h, x0, y0, st, c) {  // one disc into the pixels
    const m = st.dx.length, ext = st.ext;
    if (x0 >= ext && y0 >= ext && x0 < w - ext && y0 < h - ext) {
      const at = y0 * w + x0;  // inside: no bounds checks per pixel
      for (let t = 0; t < m; t++) px[at + st.dy[t] * w + st.dx[t]] = c;
    } else {
      for (let t = 0; t < m; t++) {
        const xx = x0 + st.dx[t], yy = y0 + st.dy[t];
        if (xx >= 0 && xx < w && yy >= 0 && yy < h) px[yy * w + xx] = c;
      }
    }
  }

  let path = null;  // the lasso being drawn (screen px), or a box [x0, y0, x1, y1]
  function draw() {
    if (!X) return;
    const t0 = performance.now();
    const w = canvas.width, h = canvas.height;
    const img = ctx.createImageData(w, h);
    const px = new Uint32Array(img.data.buffer);
    px.fill(rgba(bgHex));
    // dots grow a little as one zooms in, and are smaller on crowded maps
    const base = n > 50000 ? 2 : n > 20000 ? 3 : n > 2000 ? 4 : 6;
    const zoom = view.scale / Math.max(1, Math.min(W, H));
    const r = Math.max(1, Math.round(dpr * Math.min(base * Math.sqrt(Math.max(1, zoom)), 14)));
    const k = view.scale * dpr, ox = W / 2 * dpr - view.cx * k, oy = H / 2 * dpr + view.cy * k;
    const selc = rgba(SELECTED);
    for (let pass = 0; pass < 2; pass++) {
      // pass 0: every dot; pass 1: the selection, on top, larger, in one strong colour
      if (pass === 1 && !nSel) break;
      const st = stamp(pass === 1 ? r + 4 : r), inner = stamp(r), ext = st.ext;
      for (let i = 0; i < n; i++) {
        if (pass === 1 && !sel[i]) continue;
        const x0 = Math.round(X[i] * k + ox), y0 = Math.round(oy - Y[i] * k);
        if (x0 < -ext || y0 < -ext || x0 >= w + ext || y0 >= h + ext) continue;
        const c = pass === 1 ? selc : table[codes[i]];
        put(px, w, h, x0, y0, st, c);
        if (pass === 1) put(px, w, h, x0, y0, inner, table[codes[i]]);  // a ring
      }
    }
    ctx.putImageData(img, 0, 0);
    if (path) {
      ctx.save();
      ctx.scale(dpr, dpr);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = SELECTED;
      ctx.fillStyle = dark ? "rgba(88,166,255,.15)" : "rgba(31,111,235,.12)";
      ctx.beginPath();
      if (tool === "box") {
        const [a, b, c, d] = path;
        ctx.rect(Math.min(a, c), Math.min(b, d), Math.abs(c - a), Math.abs(d - b));
      } else {
        ctx.moveTo(path[0], path[1]);
        for (let j = 2; j < path.length; j += 2) ctx.lineTo(path[j], path[j + 1]);
        ctx.closePath();
      }
      ctx.fill(); ctx.stroke();
      ctx.restore();
    }
    const ms = performance.now() - t0;
    stats.draws++;
    stats.drawMs.push(ms);
    if (stats.drawMs.length > 500) stats.drawMs.shift();
  }

  // ---- data ------------------------------------------------------------------
  async function loadColours(by) {
    const r = await fetch("/api/map/colours?by=" + encodeURIComponent(by));
    if (!r.ok) { cl.say((await r.json()).error || "cannot load the colours"); return; }
    const buf = await r.arrayBuffer();
    stats.bytes += buf.byteLength;
    const L = new DataView(buf).getUint32(0, true);
    legend = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, L))).legend;
    const off = 4 + L + ((4 - ((4 + L) % 4)) % 4);
    codes = new Uint16Array(buf, off, n);
    table = new Uint32Array(legend.length);
    let c = 0;
    legend.forEach((e, j) => {
      e.colour = e.muted ? MUTED : PALETTE[c++ % PALETTE.length];
      table[j] = rgba(e.colour);
    });
    drawLegend();
    request();
  }
  function drawLegend() {
    const order = legend.map((e, j) => j).filter((j) => legend[j].count > 0).sort((a, b) => legend[b].count - legend[a].count);
    const shown = order.slice(0, 60);
    legendEl.replaceChildren(...shown.map((j) => {
      const e = legend[j];
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button"; b.className = "legend-entry"; b.dataset.code = j;
      const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = e.colour;
      const nm = document.createElement("span"); nm.className = "lname"; nm.textContent = e.name;
      const ct = document.createElement("span"); ct.className = "count"; ct.textContent = e.count.toLocaleString();
      b.append(sw, nm, ct); li.append(b);
      return li;
    }));
    if (order.length > shown.length) {
      const li = document.createElement("li");
      li.className = "muted"; li.textContent = "… and " + (order.length - shown.length) + " more";
      legendEl.append(li);
    }
  }
  legendEl.addEventListener("click", (e) => {
    const b = e.target.closest(".legend-entry");
    if (!b) return;
    const j = Number(b.dataset.code);
    if (!e.shiftKey) sel.fill(0);
    for (let i = 0; i < n; i++) if (codes[i] === j) sel[i] = 1;
    selectionChanged();
  });

  function buildGrid() {  // counting sort of the points into G x G cells
    const cell = new Int32Array(n);
    const start = new Int32Array(G * G + 1);
    for (let i = 0; i < n; i++) {
      const c = Math.min(G - 1, Math.floor(X[i] * G)) * G + Math.min(G - 1, Math.floor(Y[i] * G));
      cell[i] = c; start[c + 1]++;
    }
    for (let c = 0; c < G * G; c++) start[c + 1] += start[c];
    const fill = start.slice(0, G * G);
    const items = new Int32Array(n);
    for (let i = 0; i < n; i++) items[fill[cell[i]]++] = i;
    gridIdx = { start, items };
  }
  function nearest(px, py, radius) {
    const x = wx(px), y = wy(py), rw = radius / view.scale;
    const c0 = Math.max(0, Math.floor((x - rw) * G)), c1 = Math.min(G - 1, Math.floor((x + rw) * G));
    const r0 = Math.max(0, Math.floor((y - rw) * G)), r1 = Math.min(G - 1, Math.floor((y + rw) * G));
    let best = -1, bd = rw * rw;
    for (let a = c0; a <= c1; a++) {
      for (let b = r0; b <= r1; b++) {
        const c = a * G + b;
        for (let t = gridIdx.start[c]; t < gridIdx.start[c + 1]; t++) {
          const i = gridIdx.items[t];
          const d = (X[i] - x) ** 2 + (Y[i] - y) ** 2;
          if (d <= bd) { bd = d; best = i; }
        }
      }
    }
    return best;
  }

  // ---- selection ---------------------------------------------------------------
  function selected() {
    const out = [];
    for (let i = 0; i < n; i++) if (sel[i]) out.push(i);
    return out;
  }
  function selectionChanged() {
    nSel = 0;
    for (let i = 0; i < n; i++) nSel += sel[i];
    selN.textContent = nSel.toLocaleString();
    for (const id of ["sel-label", "sel-grid", "sel-reject", "sel-clear"]) {
      document.getElementById(id).disabled = nSel === 0;
    }
    request();
  }
  function selectBox(a, b, c, d, add) {
    const x0 = wx(Math.min(a, c)), x1 = wx(Math.max(a, c));
    const y0 = wy(Math.max(b, d)), y1 = wy(Math.min(b, d));
    if (!add) sel.fill(0);
    for (let i = 0; i < n; i++) {
      if (X[i] >= x0 && X[i] <= x1 && Y[i] >= y0 && Y[i] <= y1) sel[i] = 1;
    }
    selectionChanged();
  }
  function selectLasso(pts, add) {
    const m = pts.length / 2;
    if (m < 3) return;
    const qx = new Float64Array(m), qy = new Float64Array(m);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let j = 0; j < m; j++) {
      qx[j] = wx(pts[2 * j]); qy[j] = wy(pts[2 * j + 1]);
      x0 = Math.min(x0, qx[j]); x1 = Math.max(x1, qx[j]);
      y0 = Math.min(y0, qy[j]); y1 = Math.max(y1, qy[j]);
    }
    if (!add) sel.fill(0);
    for (let i = 0; i < n; i++) {
      const x = X[i], y = Y[i];
      if (x < x0 || x > x1 || y < y0 || y > y1) continue;
      let inside = false;  // even-odd rule
      for (let j = 0, k = m - 1; j < m; k = j++) {
        if ((qy[j] > y) !== (qy[k] > y) && x < (qx[k] - qx[j]) * (y - qy[j]) / (qy[k] - qy[j]) + qx[j]) inside = !inside;
      }
      if (inside) sel[i] = 1;
    }
    selectionChanged();
  }

  // ---- mouse -------------------------------------------------------------------
  let drag = null;
  function setTool(t) {
    tool = t;
    for (const b of document.querySelectorAll(".map-tools .tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === t));
    canvas.dataset.tool = t;
  }
  for (const b of document.querySelectorAll(".map-tools .tool")) b.addEventListener("click", () => setTool(b.dataset.tool));
  const pos = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.addEventListener("pointerdown", (e) => {
    if (!X || e.button !== 0) return;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = pos(e);
    drag = { x, y, cx: view.cx, cy: view.cy, moved: false, add: e.shiftKey };
    if (tool === "box") path = [x, y, x, y];
    else if (tool === "lasso") path = [x, y];
    tip.hidden = true;
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!X) return;
    const [x, y] = pos(e);
    if (!drag) { hover(x, y); return; }
    if (Math.abs(x - drag.x) + Math.abs(y - drag.y) > 3) drag.moved = true;
    if (tool === "pan") {
      view.cx = drag.cx - (x - drag.x) / view.scale;
      view.cy = drag.cy + (y - drag.y) / view.scale;
    } else if (tool === "box") { path[2] = x; path[3] = y; }
    else {
      const l = path.length;
      if (Math.abs(path[l - 2] - x) + Math.abs(path[l - 1] - y) > 2) path.push(x, y);
    }
    request();
  });
  canvas.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const d = drag; drag = null;
    const [x, y] = pos(e);
    if (!d.moved) {
      path = null;
      const i = nearest(x, y, 8);
      if (i >= 0) cl.openItem(i);
      request();
      return;
    }
    if (tool === "box") selectBox(path[0], path[1], path[2], path[3], d.add);
    else if (tool === "lasso") selectLasso(path, d.add);
    path = null;
    request();
  });
  canvas.addEventListener("wheel", (e) => {
    if (!X) return;
    e.preventDefault();
    const [x, y] = pos(e);
    const bx = wx(x), by = wy(y);
    const f = Math.exp(-e.deltaY * 0.0015);
    const min = 0.5 * Math.min(W, H), max = 4000 * Math.min(W, H);
    view.scale = Math.min(max, Math.max(min, view.scale * f));
    view.cx = bx - (x - W / 2) / view.scale;  // the point under the cursor stays
    view.cy = by + (y - H / 2) / view.scale;
    request();
  }, { passive: false });
  canvas.addEventListener("pointerleave", () => { if (!drag) tip.hidden = true; });

  let hovered = -1;
  function hover(x, y) {
    const i = nearest(x, y, 8);
    if (i < 0) { tip.hidden = true; hovered = -1; canvas.style.cursor = ""; return; }
    canvas.style.cursor = "pointer";
    if (i !== hovered) {
      hovered = i;
      tipImg.src = "/thumb/" + i + "?size=64";
      const e = legend[codes[i]];
      tipText.textContent = "item " + i + (e ? " · " + e.name : "");
    }
    tip.hidden = false;
    const tx = Math.min(x + 14, W - 150), ty = y + 14 > H - 100 ? y - 100 : y + 14;
    tip.style.left = tx + "px"; tip.style.top = ty + "px";
  }

  // ---- actions on the selection ---------------------------------------------------
  document.getElementById("sel-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = document.getElementById("sel-name").value.trim();
    if (!nSel || !name) { cl.say("select items on the map and type a label"); return; }
    const items = selected();
    const out = await cl.act({ kind: "label_items", items: items, name: name });
    cl.afterAction(out);
    cl.say("labelled " + items.length.toLocaleString() + " items " + name + " (u undoes)");
    document.getElementById("sel-name").value = "";
    await loadColours(colourSel.value);
  });
  document.getElementById("sel-reject").addEventListener("click", async () => {
    if (!nSel) return;
    const items = selected();
    const out = await cl.act({ kind: "reject", items: items });
    cl.afterAction(out);
    cl.say("rejected " + items.length.toLocaleString() + " items (u undoes)");
    await loadColours(colourSel.value);
  });
  document.getElementById("sel-grid").addEventListener("click", async () => {
    if (!nSel) return;
    const out = await cl.post("/api/selection", { items: selected(), title: "Selected on the map" });
    location.href = out.url;
  });
  document.getElementById("sel-clear").addEventListener("click", () => { sel.fill(0); selectionChanged(); });
  document.getElementById("map-reset").addEventListener("click", () => { home(); request(); });
  colourSel.addEventListener("change", () => loadColours(colourSel.value));
  document.addEventListener("keydown", (e) => {
    const tag = e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (document.getElementById("detail").open) return;
    if (e.key === "p") setTool("pan");
    else if (e.key === "b") setTool("box");
    else if (e.key === "l") setTool("lasso");
    else if (e.key === "0") { home(); request(); }
    else if (e.key === "+" || e.key === "=" || e.key === "-") {
      const f = e.key === "-" ? 1 / 1.4 : 1.4;
      view.scale = Math.min(4000 * Math.min(W, H), Math.max(0.5 * Math.min(W, H), view.scale * f));
      request();
    } else if (e.key.startsWith("Arrow")) {
      e.preventDefault();
      const step = 0.15 * Math.min(W, H) / view.scale;
      if (e.key === "ArrowLeft") view.cx -= step;
      else if (e.key === "ArrowRight") view.cx += step;
      else if (e.key === "ArrowUp") view.cy += step;
      else view.cy -= step;
      request();
    }
    else if (e.key === "Escape" && sel) { sel.fill(0); selectionChanged(); }
    else return;
    e.stopPropagation();
  });
  window.addEventListener("resize", () => { fit(); request(); });

  // ---- start -----------------------------------------------------------------------
  (async function start() {
    const t0 = performance.now();
    const r = await fetch("/api/map/xy");
    if (!r.ok) { cl.say((await r.json()).error || "cannot load the map"); return; }
    const buf = await r.arrayBuffer();
    stats.bytes += buf.byteLength;
    const q = new Uint16Array(buf);
    n = q.length / 2;
    X = new Float32Array(n); Y = new Float32Array(n);
    for (let i = 0; i < n; i++) { X[i] = q[2 * i] / 65535; Y[i] = q[2 * i + 1] / 65535; }
    sel = new Uint8Array(n);
    stats.n = n;
    buildGrid();
    fit(); home();
    await loadColours(colourSel.value);
    selectionChanged();
    document.getElementById("map-loading").hidden = true;
    draw();
    stats.loadMs = performance.now() - t0;
    canvas.dataset.ready = "1";
  })();

  // for the benchmark and the tests: the view, a lasso in world coordinates
  window.__map = {
    view: () => ({ ...view, W, H }),
    select: (i) => { sel[i] = 1; selectionChanged(); },
    screenOf: (i) => [sx(X[i]), sy(Y[i])],
    tipLoaded: () => new Promise((ok) => {
      if (tipImg.complete && tipImg.naturalWidth) ok(true);
      else { tipImg.onload = () => ok(true); tipImg.onerror = () => ok(false); }
    }),
    draw,
  };
})();

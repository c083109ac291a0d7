// clusterlens review page: every action is saved by the server at once.
// Keyboard first: no text box takes the focus on load; Esc leaves one.
"use strict";
(function () {
  const body = document.body;
  const view = body.dataset.view;
  const cluster = body.dataset.cluster === "" ? null : Number(body.dataset.cluster);
  const status = document.getElementById("status");
  const grid = document.getElementById("grid");
  const dialog = document.getElementById("detail");

  function say(text) { status.textContent = text; }

  async function post(url, payload) {
    const r = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    const out = await r.json();
    if (!r.ok) { say(out.error || "error"); throw new Error(out.error); }
    return out;
  }
  const act = (payload) => post("/api/action", payload);
  function afterAction(out) {
    const p = out.progress;
    document.getElementById("progress-text").textContent =
      p.n_labelled + " / " + p.n_items + " labelled · " + p.n_actions + " actions";
    document.getElementById("undo").disabled = p.n_actions === 0;
    document.getElementById("redo").disabled = !out.can_redo;
  }
  // remember where the annotator is (GET requests change nothing on the server)
  if (view === "cluster" ? cluster !== null : view === "pool" || view === "suspects") {
    post("/api/cursor", { at: view === "cluster" ? cluster : view }).catch(() => {});
  }
  const go = (id) => { if (id !== "") location.href = "/cluster/" + id; };
  const figures = () => (grid ? [...grid.querySelectorAll("figure.item")] : []);
  const picked = () => figures().filter((f) => f.classList.contains("picked"))
    .map((f) => Number(f.dataset.idx));

  async function reject(items) {
    const out = await act({ kind: "reject", items: items });
    for (const i of items) {
      const f = grid.querySelector('figure.item[data-idx="' + i + '"]');
      if (f) f.remove();
    }
    afterAction(out);
    say("rejected " + (items.length === 1 ? "item " + items[0] : items.length + " items") + " (u undoes)");
  }

  const nameForm = document.getElementById("name-form");
  if (nameForm) {
    nameForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = document.getElementById("name").value.trim();
      if (!name) { say("type a class name first"); return; }
      await act({ kind: "name_cluster", cluster: cluster, name: name });
      say("labelled");
      if (body.dataset.next !== "") go(body.dataset.next); else location.reload();
    });
    document.getElementById("split").addEventListener("click", async () => {
      await act({ kind: "split", cluster: cluster }); location.reload();
    });
    document.getElementById("merge").addEventListener("click", async () => {
      const into = Number(document.getElementById("merge-into").value);
      await act({ kind: "merge", into: into, other: cluster });
      location.href = "/cluster/" + into;
    });
    document.getElementById("reject-selected").addEventListener("click", async () => {
      const items = picked();
      if (!items.length) { say("select images first (shift-click or Space)"); return; }
      await reject(items);
    });
  }

  if (grid && view !== "suspects") {
    grid.addEventListener("click", async (e) => {
      if (e.target.classList.contains("rej")) {
        e.stopPropagation();
        await reject([Number(e.target.closest("figure").dataset.idx)]);
        return;
      }
      if (e.target.classList.contains("sim")) return;  // a link: more like this
      if (e.target.classList.contains("keep-one")) {
        const sec = e.target.closest("section.group");
        const all = [...sec.querySelectorAll("figure.item")].map((f) => Number(f.dataset.idx));
        await act({ kind: "keep_one", keep: Number(e.target.dataset.idx), items: all });
        location.reload();
        return;
      }
      const fig = e.target.closest("figure.item");
      if (!fig) return;
      if (e.shiftKey || e.ctrlKey || e.metaKey) { fig.classList.toggle("picked"); return; }
      openDetail(fig);
    });
    grid.addEventListener("keydown", async (e) => {
      const fig = e.target.closest ? e.target.closest("figure.item") : null;
      if (!fig || e.target !== fig) return;
      if (e.key === " ") { e.preventDefault(); fig.classList.toggle("picked"); }
      else if (e.key === "Enter") { e.preventDefault(); e.stopPropagation(); openDetail(fig); }
      else if ((e.key === "x" || e.key === "Delete") && view === "cluster") {
        e.stopPropagation();
        const next = fig.nextElementSibling || fig.previousElementSibling;
        await reject([Number(fig.dataset.idx)]);
        if (next) next.focus();
      } else if (e.key === "m" && fig.querySelector("a.sim")) {
        e.stopPropagation();
        location.href = fig.querySelector("a.sim").href;
      } else if (e.key === "k" && view === "duplicates") {
        const btn = fig.parentElement.querySelector(".keep-one");
        if (btn) { e.stopPropagation(); btn.click(); }
      }
    });
  }
  const fixForm = document.getElementById("fix-form");
  if (grid && fixForm) {
    fixForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const items = picked();
      const name = document.getElementById("fix-name").value.trim();
      if (!items.length || !name) { say("select images (shift-click or Space) and type a label"); return; }
      await act({ kind: "label_items", items: items, name: name }); location.reload();
    });
  }
  const poolForm = document.getElementById("pool-form");
  if (grid && poolForm) {
    poolForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const items = picked();
      const name = document.getElementById("name").value.trim();
      if (!items.length || !name) { say("select images (shift-click or Space) and type a label"); return; }
      await act({ kind: "label_items", items: items, name: name }); location.reload();
    });
    const rejectPicked = document.getElementById("reject-picked");
    if (rejectPicked) {
      rejectPicked.addEventListener("click", async () => {
        const items = picked();
        if (!items.length) { say("select images first (shift-click or Space)"); return; }
        await reject(items);
      });
    }
    document.getElementById("select-all").addEventListener("click", () => {
      const figs = figures();
      const all = figs.every((f) => f.classList.contains("picked"));
      for (const f of figs) f.classList.toggle("picked", !all);
    });
  }
  if (grid && view === "suspects") {
    grid.addEventListener("click", async (e) => {
      const fig = e.target.closest("figure.suspect");
      if (!fig) return;
      if (e.target.tagName === "IMG") { openDetail(fig); return; }
      if (e.target.tagName !== "BUTTON") return;
      const decision = e.target.classList.contains("accept") ? "accept" : "keep";
      afterAction(await act({ kind: "resolve_suspect", item: Number(fig.dataset.idx), decision: decision }));
      fig.remove();
    });
    grid.addEventListener("keydown", async (e) => {
      if (e.key !== "Enter" || !e.target.classList.contains("fix")) return;
      e.stopPropagation();
      const fig = e.target.closest("figure.suspect");
      afterAction(await act({ kind: "resolve_suspect", item: Number(fig.dataset.idx), decision: "fix", label: e.target.value }));
      fig.remove();
    });
  }

  async function undo() { await act({ kind: "undo", n: 1 }); location.reload(); }
  async function redo() {
    const out = await act({ kind: "redo", n: 1 });
    if (!out.result.length) { say("nothing to redo"); return; }
    location.reload();
  }
  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("redo").addEventListener("click", redo);
  for (const b of document.querySelectorAll(".export-btn")) {
    b.addEventListener("click", async () => {
      const format = b.dataset.format;
      let r = await fetch("/api/export", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ format }),
      });
      let out = await r.json();
      if (r.status === 409) {  // an earlier export: replaced only when confirmed
        if (!window.confirm(out.error)) { say("export kept as it was: " + out.exists); return; }
        out = await post("/api/export", { format, overwrite: true });
      } else if (!r.ok) { say(out.error || "error"); return; }
      say("exported " + out.n_labelled + " labels to " + out.out +
          (out.skipped_text ? " (" + out.skipped_text + ")" : ""));
      b.closest("details").open = false;
    });
  }

  // ---- the detail view -------------------------------------------------
  let shown = null;  // the figure the dialog shows
  function row(k, v) {
    const tr = document.createElement("tr");
    const th = document.createElement("th"); th.textContent = k;
    const td = document.createElement("td"); td.textContent = v;
    tr.append(th, td);
    return tr;
  }
  async function openDetail(fig) {
    shown = fig;
    const idx = Number(fig.dataset.idx);
    const r = await fetch("/api/item/" + idx);
    const d = await r.json();
    if (!r.ok) { say(d.error || "error"); return; }
    document.getElementById("d-large").src = d.large;
    document.getElementById("d-title").textContent = "Item " + d.index;
    document.getElementById("d-file").textContent = d.file;
    const kv = document.getElementById("d-kv");
    kv.replaceChildren(
      row("label", d.label || "(none)"),
      row("cluster", d.cluster >= 0 ? "#" + d.cluster + (d.cluster_name ? " " + d.cluster_name : "") : "pool"),
    );
    if (d.given) kv.append(row("given label", d.given));
    if (d.suggested && d.suggested !== d.given) kv.append(row("suggested", d.suggested));
    if (d.mark) kv.append(row("marked", d.mark));
    if (d.box) {
      const r = (v) => Math.round(v);
      kv.append(row("box", r(d.box.w) + " × " + r(d.box.h) + " at (" + r(d.box.x) + ", " + r(d.box.y) +
        ") in " + d.box.width + " × " + d.box.height));
    }
    kv.append(row("issues", d.issues.length ? d.issues.join(", ") : "none found"));
    for (const [k, v] of Object.entries(d.scores)) kv.append(row(k, String(v)));
    const wrap = document.getElementById("d-whole-wrap");
    wrap.hidden = !(d.box && d.whole);
    if (d.box && d.whole) {
      document.getElementById("d-whole").src = d.whole;
      const b = document.getElementById("d-box").style;
      b.left = (100 * d.box.x / d.box.width) + "%";
      b.top = (100 * d.box.y / d.box.height) + "%";
      b.width = (100 * d.box.w / d.box.width) + "%";
      b.height = (100 * d.box.h / d.box.height) + "%";
    }
    const nb = document.getElementById("d-neighbors");
    nb.replaceChildren(...d.neighbors.map((n) => {
      const f = document.createElement("figure");
      f.className = "item"; f.dataset.idx = n.index; f.tabIndex = 0;
      const im = document.createElement("img");
      im.src = "/thumb/" + n.index; im.alt = "item " + n.index;
      const c = document.createElement("figcaption"); c.textContent = n.label || "";
      f.append(im, c);
      f.addEventListener("click", () => openDetail(f));
      return f;
    }));
    if (!d.neighbors.length) nb.textContent = "no neighbours computed (clusterlens explore finds them)";
    document.getElementById("d-reject").hidden = !(view === "cluster" && grid && grid.contains(fig));
    const sim = document.getElementById("d-similar");
    sim.hidden = !d.similar;
    if (d.similar) sim.href = d.similar;
    document.getElementById("d-name").value = "";
    if (!dialog.open) dialog.showModal();
    document.getElementById("d-close").focus();
  }
  document.getElementById("d-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => { if (shown && document.contains(shown)) shown.focus(); });
  dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
  document.getElementById("d-reject").addEventListener("click", async () => {
    const fig = shown;
    const next = fig.nextElementSibling;
    await reject([Number(fig.dataset.idx)]);
    if (next && next.matches("figure.item")) openDetail(next); else dialog.close();
  });
  document.getElementById("d-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = document.getElementById("d-name").value.trim();
    if (!name) { say("type a label"); return; }
    const out = await act({ kind: "label_items", items: [Number(shown.dataset.idx)], name: name });
    afterAction(out);
    const lab = shown.querySelector(".lab");
    if (lab) lab.textContent = name;
    say("labelled item " + shown.dataset.idx + " " + name);
    openDetail(shown);
  });
  function step(dir) {
    if (!shown || !grid || !grid.contains(shown)) return;
    const figs = [...grid.querySelectorAll("figure.item, figure.suspect")];
    const k = figs.indexOf(shown) + dir;
    if (k >= 0 && k < figs.length) openDetail(figs[k]);
  }
  dialog.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    if (e.key === "ArrowRight") { e.preventDefault(); step(1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); step(-1); }
    else if (e.key === "x" && !document.getElementById("d-reject").hidden) document.getElementById("d-reject").click();
    else if (e.key === "m" && !document.getElementById("d-similar").hidden) document.getElementById("d-similar").click();
    e.stopPropagation();
  });

  // ---- search by image: a file picked in the header, or dropped anywhere ---
  async function searchImage(file) {
    if (!file) return;
    say("searching for images like " + file.name + "…");
    const r = await fetch("/api/search/image", {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
    let out;
    try { out = await r.json(); } catch (err) { out = { error: "the server refused the upload (" + r.status + ")" }; }
    if (!r.ok) { say(out.error || "error"); return; }
    location.href = out.url;
  }
  const picker = document.getElementById("search-image");
  if (picker) {
    picker.addEventListener("change", () => searchImage(picker.files[0]));
    const lab = document.getElementById("search-image-label");
    lab.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); e.stopPropagation(); picker.click(); }
    });
    document.addEventListener("dragover", (e) => {
      if ([...e.dataTransfer.types].includes("Files")) { e.preventDefault(); body.classList.add("dropping"); }
    });
    document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) body.classList.remove("dropping"); });
    document.addEventListener("drop", (e) => {
      if (!e.dataTransfer.files.length) return;
      e.preventDefault(); body.classList.remove("dropping");
      searchImage(e.dataTransfer.files[0]);
    });
  }

  // what the map's script uses
  window.clusterlens = {
    act, afterAction, say, post,
    openItem(idx) {
      const f = document.createElement("figure");
      f.className = "item"; f.dataset.idx = idx;
      openDetail(f);
    },
  };

  // ---- keys --------------------------------------------------------------
  document.addEventListener("keydown", async (e) => {
    const tag = e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    if (dialog.open || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "ArrowRight" && view === "cluster") go(body.dataset.next);
    else if (e.key === "ArrowLeft" && view === "cluster") go(body.dataset.prev);
    else if (e.key === "u") await undo();
    else if (e.key === "r") await redo();
    else if (e.key === "s" && cluster !== null) { await act({ kind: "split", cluster: cluster }); location.reload(); }
    else if (e.key === "Enter" && (nameForm || poolForm) && tag !== "BUTTON" && tag !== "A") {
      e.preventDefault();
      document.getElementById("name").focus();
    }
  });
})();

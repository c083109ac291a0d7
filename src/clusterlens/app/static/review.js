// clusterlens review page: every click is one action, saved by the server at once.
"use strict";
(function () {
  const body = document.body;
  const view = body.dataset.view;
  const cluster = body.dataset.cluster === "" ? null : Number(body.dataset.cluster);
  const status = document.getElementById("status");

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
  // remember where the annotator is (GET requests change nothing on the server)
  if (view === "cluster" ? cluster !== null : view === "pool" || view === "suspects") {
    post("/api/cursor", { at: view === "cluster" ? cluster : view }).catch(() => {});
  }
  const go = (id) => { if (id !== "") location.href = "/cluster/" + id; };

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
  }

  const grid = document.getElementById("grid");
  if (grid && view === "cluster") {
    grid.addEventListener("click", async (e) => {
      const fig = e.target.closest("figure.item");
      if (!fig) return;
      if (e.shiftKey) { fig.classList.toggle("picked"); return; }  // select, no reject
      fig.classList.add("selected");
      await act({ kind: "reject", items: [Number(fig.dataset.idx)] });
      fig.remove();
      say("rejected item " + fig.dataset.idx);
    });
  }
  const fixForm = document.getElementById("fix-form");
  if (grid && fixForm) {
    fixForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const items = [...grid.querySelectorAll("figure.picked")].map((f) => Number(f.dataset.idx));
      const name = document.getElementById("fix-name").value.trim();
      if (!items.length || !name) { say("shift-click images and type a label"); return; }
      await act({ kind: "label_items", items: items, name: name }); location.reload();
    });
  }
  if (grid && (view === "pool" || view === "curate")) {
    grid.addEventListener("click", (e) => {
      const fig = e.target.closest("figure.item");
      if (fig) fig.classList.toggle("selected");
    });
    document.getElementById("pool-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const items = [...grid.querySelectorAll("figure.selected")].map((f) => Number(f.dataset.idx));
      const name = document.getElementById("name").value.trim();
      if (!items.length || !name) { say("select images and type a label"); return; }
      await act({ kind: "label_items", items: items, name: name }); location.reload();
    });
  }
  if (grid && view === "suspects") {
    grid.addEventListener("click", async (e) => {
      const fig = e.target.closest("figure.suspect");
      if (!fig || e.target.tagName !== "BUTTON") return;
      const decision = e.target.classList.contains("accept") ? "accept" : "keep";
      await act({ kind: "resolve_suspect", item: Number(fig.dataset.idx), decision: decision });
      fig.remove();
    });
    grid.addEventListener("keydown", async (e) => {
      if (e.key !== "Enter" || !e.target.classList.contains("fix")) return;
      const fig = e.target.closest("figure.suspect");
      await act({ kind: "resolve_suspect", item: Number(fig.dataset.idx), decision: "fix", label: e.target.value });
      fig.remove();
    });
  }

  document.getElementById("undo").addEventListener("click", async () => {
    await act({ kind: "undo", n: 1 }); location.reload();
  });
  for (const b of document.querySelectorAll(".export-btn")) {
    b.addEventListener("click", async () => {
      const out = await post("/api/export", { format: b.dataset.format });
      say("exported " + out.n_labelled + " labels to " + out.out);
    });
  }

  document.addEventListener("keydown", async (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "ArrowRight") go(body.dataset.next);
    else if (e.key === "ArrowLeft") go(body.dataset.prev);
    else if (e.key === "u") { await act({ kind: "undo", n: 1 }); location.reload(); }
    else if (e.key === "s" && cluster !== null) { await act({ kind: "split", cluster: cluster }); location.reload(); }
    else if (e.key === "Enter" && nameForm) document.getElementById("name").focus();
  });
  const input = document.getElementById("name");
  if (input && view === "cluster") input.focus();
})();

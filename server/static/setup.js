// The meter setup page: boxes on an SVG over the turned photo, dragged and resized with the pointer, the reading
// of the photo with the edited profile after every edit, save and confirm with the page's CSRF token.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const cfg = $("config").dataset;
  const base = "/api/meters/" + encodeURIComponent(cfg.meter) + "/setup";
  const svg = $("canvas"), layer = $("box-layer"), NS = "http://www.w3.org/2000/svg";
  let boxes = [], selected = -1, size = [0, 0], hasPhoto = false, timer = null, drag = null, reads = 0;

  async function call(path, opts) {
    const o = Object.assign({ credentials: "same-origin" }, opts || {});
    o.headers = Object.assign({ "X-CSRF-Token": cfg.csrf }, o.headers || {});
    const r = await fetch(base + path, o);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }
  const postJson = (path, data) => call(path, { method: "POST", body: JSON.stringify(data),
                                                headers: { "Content-Type": "application/json" } });
  const say = (text, bad) => { $("setup-msg").textContent = text; $("setup-msg").className = bad ? "error" : ""; };
  const transform = () => ({ rotate: Number($("rotate").value) || 0, flip: $("flip").value });
  const round = (v) => Math.max(0, Math.round(v));

  function draft() {
    const t = transform();
    return { rotate: t.rotate, flip: t.flip, kind: $("kind").value, decimals: Number($("decimals").value) || 0,
             digits: boxes.filter((b) => b.kind === "digit").map((b) => [b.x, b.y, b.w, b.h]),
             pointers: boxes.filter((b) => b.kind === "pointer").map((b) => [b.x, b.y, b.w, b.h]) };
  }

  function render() {
    layer.replaceChildren();
    const tbody = $("boxes").querySelector("tbody");
    tbody.replaceChildren();
    const handle = Math.max(8, size[0] / 80);
    let nd = 0, np = 0;
    boxes.forEach((b, i) => {
      const name = b.kind === "digit" ? "digit " + (++nd) : "pointer " + (++np);
      const r = document.createElementNS(NS, "rect");
      for (const [k, v] of Object.entries({ x: b.x, y: b.y, width: b.w, height: b.h })) r.setAttribute(k, v);
      r.setAttribute("class", "box " + b.kind + (i === selected ? " selected" : ""));
      r.dataset.index = i; r.dataset.name = name;
      r.addEventListener("pointerdown", (ev) => start(ev, i, "move"));
      const h = document.createElementNS(NS, "rect");
      for (const [k, v] of Object.entries({ x: b.x + b.w - handle / 2, y: b.y + b.h - handle / 2, width: handle,
                                            height: handle })) h.setAttribute(k, v);
      h.setAttribute("class", "handle"); h.dataset.index = i;
      h.addEventListener("pointerdown", (ev) => start(ev, i, "resize"));
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", b.x); t.setAttribute("y", Math.max(12, b.y - 4)); t.textContent = b.label || "";
      layer.append(r, h, t);
      const tr = document.createElement("tr");
      tr.dataset.index = i;
      tr.appendChild(Object.assign(document.createElement("td"), { textContent: name }));
      for (const k of ["x", "y", "w", "h"]) {
        const input = Object.assign(document.createElement("input"), { type: "number", value: b[k], min: 0 });
        input.dataset.key = k;
        input.addEventListener("change", () => { b[k] = round(Number(input.value)); edited(); });
        tr.appendChild(document.createElement("td")).appendChild(input);
      }
      tr.addEventListener("click", () => { if (selected !== i) { selected = i; render(); } });
      tbody.appendChild(tr);
    });
  }

  function point(ev) {
    const p = svg.createSVGPoint(); p.x = ev.clientX; p.y = ev.clientY;
    return p.matrixTransform(svg.getScreenCTM().inverse());
  }
  function start(ev, i, mode) {
    ev.preventDefault(); ev.stopPropagation();
    selected = i; drag = { i, mode, from: point(ev), box: Object.assign({}, boxes[i]) };
    render();
  }
  window.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const p = point(ev), b = boxes[drag.i], o = drag.box, dx = p.x - drag.from.x, dy = p.y - drag.from.y;
    if (drag.mode === "move") {
      b.x = Math.min(round(o.x + dx), Math.max(0, size[0] - b.w)); b.y = Math.min(round(o.y + dy), Math.max(0, size[1] - b.h));
    } else {
      b.w = Math.max(2, Math.min(round(o.w + dx), size[0] - b.x)); b.h = Math.max(2, Math.min(round(o.h + dy), size[1] - b.y));
    }
    render();
  });
  window.addEventListener("pointerup", () => { if (drag) { drag = null; edited(); } });

  function edited() { render(); clearTimeout(timer); timer = setTimeout(readLive, 250); }

  async function readLive() {
    if (!hasPhoto || !boxes.some((b) => b.kind === "digit")) return;
    $("live-state").textContent = "reading…";
    try {
      const r = await postJson("/read", draft());
      let nd = 0, np = 0;
      const per = {};
      r.boxes.forEach((x) => { per[x.name] = x; });
      boxes.forEach((b) => {
        const x = per[b.kind === "digit" ? "digit " + (++nd) : "pointer " + (++np)];
        b.label = x && x.value !== null ? x.value.toFixed(1) + " (" + x.confidence.toFixed(2) + ")" : "?";
      });
      $("live-reading").textContent = r.reading === null ? "unreadable" : r.reading;
      $("live-confidence").textContent = "confidence " + r.confidence.toFixed(2) + (r.error ? " — " + r.error : "");
      $("live-problems").replaceChildren(...r.boxes.filter((x) => x.problems.length).map(
        (x) => Object.assign(document.createElement("li"), { textContent: x.name + ": " + x.problems.join("; ") })));
      $("live-state").textContent = "";
      $("live-reading").dataset.reads = String(++reads);
      render();
    } catch (e) { $("live-state").textContent = e.message; }
  }

  function loadImage() {
    if (!hasPhoto) return Promise.resolve();
    const t = transform();
    const url = base + "/photo.png?rotate=" + t.rotate + "&flip=" + t.flip + "&n=" + Date.now();
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        size = [img.naturalWidth, img.naturalHeight];
        svg.setAttribute("viewBox", "0 0 " + size[0] + " " + size[1]);
        svg.dataset.width = size[0]; svg.dataset.height = size[1];
        const im = $("photo-image");
        im.setAttribute("width", size[0]); im.setAttribute("height", size[1]); im.setAttribute("href", url);
        $("photo-info").textContent = "photo " + size[0] + "×" + size[1] + " px (turned as the profile says)";
        render(); resolve();
      };
      img.onerror = () => reject(new Error("the photo cannot be shown"));
      img.src = url;
    });
  }

  async function photoLoaded(body) {
    hasPhoto = true; await loadImage();
    if (!boxes.length) await propose(); else readLive();
    say("photo loaded (" + body.width + "×" + body.height + ", " + body.source + ")");
  }
  async function propose() {
    try {
      const r = await postJson("/propose", transform());
      if (r.located) {
        boxes = boxes.filter((b) => b.kind !== "digit").concat(r.digits.map(([x, y, w, h]) => ({ kind: "digit", x, y, w, h })));
        say("auto-locate proposed " + r.digits.length + " digit boxes: check them on the photo");
      } else say("auto-locate found no counter: draw the boxes by hand", true);
      edited();
    } catch (e) { say(e.message, true); }
  }
  function addBox(kind) {
    const s = Math.max(20, Math.round(size[0] / 20));
    boxes.push({ kind, x: Math.round(size[0] / 2), y: Math.round(size[1] / 2), w: s, h: kind === "digit" ? Math.round(s * 1.5) : s });
    selected = boxes.length - 1; edited();
  }

  $("photo-file").addEventListener("change", async () => {
    const f = $("photo-file").files[0];
    if (!f) return;
    try { await photoLoaded(await call("/photo", { method: "POST", body: f, headers: { "Content-Type": f.type || "application/octet-stream" } })); }
    catch (e) { say(e.message, true); }
  });
  $("use-latest").addEventListener("click", async () => {
    try { await photoLoaded(await call("/photo?source=latest", { method: "POST" })); } catch (e) { say(e.message, true); }
  });
  $("propose").addEventListener("click", propose);
  $("add-digit").addEventListener("click", () => addBox("digit"));
  $("add-pointer").addEventListener("click", () => addBox("pointer"));
  $("remove-box").addEventListener("click", () => { if (selected >= 0) { boxes.splice(selected, 1); selected = -1; edited(); } });
  for (const id of ["rotate", "flip"]) $(id).addEventListener("change", () => loadImage().then(readLive).catch((e) => say(e.message, true)));
  for (const id of ["kind", "decimals"]) $(id).addEventListener("change", edited);
  $("save").addEventListener("click", async () => {
    try {
      const r = await postJson("/save", draft());
      $("saved-yaml").textContent = r.yaml; $("saved-yaml").hidden = false;
      say("saved " + r.profile + " (reference " + r.reference + ")");
    } catch (e) { say(e.message, true); }
  });
  $("confirm").addEventListener("click", async () => {
    try {
      const r = await postJson("/confirm", { reading: $("confirm-reading").value.trim() });
      say("confirmed " + r.reading + " on " + r.photo + ": " + r.labelled + " digits labelled");
    } catch (e) { say(e.message, true); }
  });

  call("").then(async (s) => {
    if (s.profile) {
      $("rotate").value = s.profile.rotate; $("flip").value = s.profile.flip;
      $("kind").value = s.profile.kind; $("decimals").value = s.profile.decimals;
      boxes = s.profile.digits.map(([x, y, w, h]) => ({ kind: "digit", x, y, w, h }))
        .concat(s.profile.pointers.map(([x, y, w, h]) => ({ kind: "pointer", x, y, w, h })));
    }
    if (s.confirm_hint) { $("confirm-hint").textContent = s.confirm_hint; $("confirm-hint").hidden = false; }
    hasPhoto = s.photo; await loadImage(); render(); readLive();
    svg.dataset.ready = "true";
  }).catch((e) => say(e.message, true));
})();

// edge-fer's page: polls the newest picture (at most web.fps a second, newest wins) and the
// state (faces, label mix, health) from this daemon only. No third-party code.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  let pictureMs = 200;
  let shownUrl = null;

  function status(text, bad) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("bad", bad);
  }

  async function get(path) {
    const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) {
      location.reload(); // the login form
      throw new Error("token needed");
    }
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response;
  }

  function show(img, url) {
    return new Promise((done) => {
      img.onload = done;
      img.onerror = done;
      img.src = url;
    });
  }

  async function pictures() {
    const img = $("live");
    for (;;) {
      if (document.hidden) { // a phone in a pocket asks for nothing
        await sleep(500);
        continue;
      }
      const started = performance.now();
      try {
        const response = await get("frame.jpg");
        const seq = response.headers.get("X-Frame-Seq");
        const interval = Number(response.headers.get("X-Frame-Interval-Ms"));
        if (interval > 0) pictureMs = interval;
        const url = URL.createObjectURL(await response.blob());
        await show(img, url);
        if (shownUrl) URL.revokeObjectURL(shownUrl);
        shownUrl = url;
        img.dataset.seq = seq;
        img.dataset.pictures = String(Number(img.dataset.pictures || 0) + 1);
        status("live", false);
      } catch (err) {
        status(`no picture (${err.message})`, true);
        await sleep(1000);
      }
      await sleep(Math.max(0, pictureMs - (performance.now() - started)));
    }
  }

  function swatch(colour) {
    const el = document.createElement("span");
    el.className = "swatch";
    el.style.backgroundColor = colour;
    return el;
  }

  function showFaces(faces, colours) {
    const list = $("faces");
    list.replaceChildren();
    if (!faces.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "no face in view";
      list.append(li);
      return;
    }
    for (const face of faces) {
      const li = document.createElement("li");
      li.dataset.label = face.label;
      li.dataset.id = String(face.id);
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = `#${face.id} ${face.label}`;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `${Math.round(face.score * 100)}%`;
      li.append(swatch(colours[face.label] || "#ebebeb"), name, score);
      list.append(li);
    }
  }

  function showMix(mix, colours) {
    const svg = $("mix");
    svg.replaceChildren();
    const width = 300, height = 96, top = 4;
    // A fixed time axis: the newest bucket at the right, empty slots before the first one.
    const slots = Math.max(mix.slots || 0, mix.buckets.length, 1);
    const slot = width / slots;
    const offset = slots - mix.buckets.length;
    let bars = 0;
    mix.buckets.forEach((counts, j) => {
      const i = offset + j;
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      if (!total) return;
      let y = top + height;
      for (const label of mix.labels) {
        const n = counts[label] || 0;
        if (!n) continue;
        const h = (n / total) * height;
        y -= h;
        const rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("x", (i * slot + 1).toFixed(1));
        rect.setAttribute("y", y.toFixed(1));
        rect.setAttribute("width", Math.max(slot - 2, 1).toFixed(1));
        rect.setAttribute("height", h.toFixed(1));
        rect.setAttribute("fill", colours[label] || "#ebebeb");
        rect.setAttribute("class", "bar");
        rect.dataset.label = label;
        const title = document.createElementNS(SVG, "title");
        title.textContent = `${label}: ${Math.round((n / total) * 100)}%`;
        rect.append(title);
        svg.append(rect);
        bars += 1;
      }
    });
    const minutes = (slots * mix.bucket_s) / 60;
    for (const [x, text, anchor] of [[0, `-${Math.round(minutes)} min`, "start"], [width, "now", "end"]]) {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", String(x));
      t.setAttribute("y", "109");
      t.setAttribute("text-anchor", anchor);
      t.setAttribute("class", "axis");
      t.textContent = text;
      svg.append(t);
    }
    svg.dataset.bars = String(bars);
    $("mix-minutes").textContent = String(Math.round(minutes));
    const legend = $("legend");
    legend.replaceChildren();
    for (const label of mix.labels) {
      const li = document.createElement("li");
      li.append(swatch(colours[label] || "#ebebeb"), document.createTextNode(label));
      legend.append(li);
    }
  }

  function showHealth(h) {
    const rows = [
      ["fps", h.fps.toFixed(1)],
      ["detect (p50)", `${h.detect_ms.toFixed(1)} ms`],
      ["classify (p50)", `${h.classify_ms.toFixed(2)} ms`],
      ["capture (p50)", `${h.capture_ms.toFixed(1)} ms`],
      ["dropped frames", String(h.dropped_frames)],
      ["reconnects", String(h.reconnects)],
      ["frames", String(h.frames)],
      ["uptime", `${Math.floor(h.uptime_s / 60)} min ${Math.floor(h.uptime_s % 60)} s`],
      ["model", `${h.model} (${h.model_file})`],
      ["runtime", h.runtime],
      ["source", h.source],
    ];
    const dl = $("health");
    dl.replaceChildren();
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dl.append(dt, dd);
    }
    $("source").textContent = h.source;
  }

  async function state() {
    for (;;) {
      if (!document.hidden) {
        try {
          const s = await (await get("api/state")).json();
          showFaces(s.faces, s.colours);
          showMix(s.mix, s.colours);
          showHealth(s.health);
          $("logout").hidden = !s.token;
          document.body.dataset.frame = String(s.frame);
        } catch (err) {
          status(`no data (${err.message})`, true);
        }
      }
      await sleep(1000);
    }
  }

  pictures();
  state();
})();

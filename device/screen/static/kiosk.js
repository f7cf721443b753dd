// The kiosk screen's few behaviours: the idle countdown, live updates (cuff pressure, readings,
// camera progress, deliveries), and busy labels on slow buttons. Every page works without it.
"use strict";

(function () {
  const body = document.body;
  // Set when this page signs out itself (Finish, or its countdown's end): the form's own answer is the goodbye,
  // and the visit's "ended" event, which comes while that answer is on its way, must not replace it.
  let leaving = false;

  function delivered(id) {
    const done = document.querySelector(`[data-delivered-for="${id}"]`);
    if (done) done.hidden = false;
    const waiting = document.querySelector(`[data-waiting-for="${id}"]`);
    if (waiting) waiting.hidden = true;
  }

  // Live updates from the kiosk (Server-Sent Events).
  function connect() {
    const source = new EventSource("/events");
    // The visit ended elsewhere (the kiosk's own idle watch, a video call that could not go on, a shutdown): the
    // goodbye says the screen went unused only when that is why.
    source.addEventListener("ended", (e) => {
      source.close();
      if (leaving) return;
      const reason = JSON.parse(e.data || "{}").reason;
      // In the visit's language: the goodbye clears the browser's cookies, the language's too.
      const lang = encodeURIComponent(document.documentElement.lang || "");
      window.location.replace(reason === "idle" ? `/bye?idle=1&lang=${lang}` : `/bye?lang=${lang}`);
    });
    source.addEventListener("pressure", (e) => {
      const p = document.querySelector("[data-pressure]");
      if (!p) return;
      p.hidden = false;
      p.querySelector("[data-pressure-value]").textContent = JSON.parse(e.data).mmHg;
    });
    // How many readings this visit has as the stream opens: one taken between this page's rendering and
    // now came as no event, so the page is rendered again to show it.
    source.addEventListener("readings", (e) => {
      const live = document.querySelector("[data-codes]");
      if (live && JSON.parse(e.data).count > Number(live.dataset.shown)) window.location.replace(window.location.pathname);
    });
    source.addEventListener("reading", (e) => {
      const r = JSON.parse(e.data);
      const live = document.querySelector("[data-codes]");
      if (live) live.dataset.shown = Number(live.dataset.shown) + 1;
      if (!live || live.dataset.step === "camera") return;
      // Only the readings of this step's own device: the oximeter's pulse is not the cuff's.
      if (r.step !== live.dataset.step) return;
      const label = document.querySelector(`[data-reading-labels]`).content.querySelector(`[data-code="${r.code}"]`);
      const li = document.createElement("li");
      li.append((label ? label.textContent : r.code) + ": ");
      const strong = document.createElement("strong");
      strong.textContent = `${r.value} ${r.unit === "mm[Hg]" ? "mmHg" : r.unit === "Cel" ? "°C" : r.unit}`;
      li.append(strong);
      live.querySelector("[data-readings]").append(li);
      const waiting = live.querySelector("[data-waiting]");
      if (waiting) waiting.hidden = true;
      const pressure = live.querySelector("[data-pressure]");
      if (pressure) pressure.hidden = true;
      resetIdle();
    });
    source.addEventListener("camera", (e) => {
      const bar = document.querySelector("[data-camera-progress]");
      if (bar) { bar.hidden = false; bar.value = JSON.parse(e.data).progress; }
      resetIdle();
    });
    // A live consult: the page follows the call (waiting, joining, live, ended) wherever the patient is.
    source.addEventListener("consult", (e) => {
      const c = JSON.parse(e.data);
      // The provider asked for a form (kept in the state until its page is served, so a page that was still
      // loading when the request came follows it too).
      if (c.form) { window.location.assign(c.form === "vitals" ? "/vitals" : "/case"); return; }
      const here = document.querySelector("[data-consult]");
      const same = here && here.dataset.consult === c.phase &&
        here.dataset.position === String(c.position ?? "") && here.dataset.estimate === String(c.estimate_s ?? "") &&
        Number(here.dataset.messages) >= c.messages;
      if (here && !same) window.location.replace("/consult");
      // Elsewhere (vitals during a call): go to the call when it starts, and when it ends while it was on.
      const wasInCall = body.dataset.inCall === "yes";
      const inCall = c.phase === "connecting" || c.phase === "live";
      if (!here && inCall !== wasInCall && (inCall || c.phase === "ended")) window.location.assign("/consult");
    });
    source.addEventListener("consult-message", (e) => {
      const here = document.querySelector("[data-consult]");
      if (here) here.dataset.messages = Number(here.dataset.messages) + 1;
      const list = document.querySelector("[data-consult-messages]");
      if (!list) return;
      const li = document.createElement("li");
      li.textContent = JSON.parse(e.data).text;
      list.append(li);
    });
    source.addEventListener("delivered", (e) => { for (const id of JSON.parse(e.data).ids) delivered(id); });
    // A receipt that came between this page's rendering and this stream's opening: ask once.
    source.addEventListener("open", () => {
      for (const waiting of document.querySelectorAll("[data-waiting-for]")) {
        const id = waiting.dataset.waitingFor;
        fetch(`/case/sent/${id}/status`, { credentials: "same-origin" })
          .then((r) => (r.ok ? r.json() : { delivered: false }))
          .then((s) => { if (s.delivered) delivered(id); })
          .catch(() => {});
      }
    });
  }

  // Idle countdown: a visible warning, then the visit ends (the kiosk ends it too if this page cannot).
  let deadline = 0;
  let lastPing = 0;
  function resetIdle() {
    if (!body.dataset.idle) return;
    deadline = Date.now() + Number(body.dataset.idle) * 1000;
    const dialog = document.querySelector("[data-idle-dialog]");
    if (dialog && !dialog.hidden) dialog.hidden = true;
  }
  function touched() {
    resetIdle();
    if (Date.now() - lastPing > 5000) {
      lastPing = Date.now();
      fetch("/alive", { method: "POST", credentials: "same-origin" }).catch(() => {});
    }
  }
  function tick() {
    const dialog = document.querySelector("[data-idle-dialog]");
    const left = Math.ceil((deadline - Date.now()) / 1000);
    if (left <= 0) { leaving = true; document.querySelector("[data-idle-form]").submit(); return; }
    if (left <= Number(body.dataset.warn)) {
      dialog.querySelector("[data-idle-count]").textContent = left;
      if (dialog.hidden) { dialog.hidden = false; dialog.querySelector("[data-idle-stay]").focus(); }
    }
    setTimeout(tick, 250);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const form of document.querySelectorAll('form[action="/finish"], form[action="/timeout"]')) {
      form.addEventListener("submit", () => { leaving = true; });
    }
    for (const form of document.querySelectorAll("form[data-busy-label]")) {
      form.addEventListener("submit", () => {
        const button = form.querySelector("button");
        button.disabled = true;
        button.textContent = form.dataset.busyLabel;
      });
    }
    const auto = document.querySelector("[data-autohome]");
    if (auto) setTimeout(() => window.location.replace("/"), 8000);
    if (!("visit" in body.dataset)) return;
    connect();
    resetIdle();
    for (const type of ["pointerdown", "keydown", "touchstart", "wheel"]) {
      document.addEventListener(type, touched, { passive: true });
    }
    document.querySelector("[data-idle-stay]").addEventListener("click", touched);
    tick();
  });
})();

/*
 * The provider's side of a live video consult (hub/web/templates/consult.html).
 *
 * Plain ES2020, no build step. Loaded with <script src> (CSP `script-src 'self'`: no inline script, no eval,
 * no inline handlers). The hub only signals; media goes between this browser and the kiosk (or via TURN).
 *
 * Markup: <section id="call" data-consult="<uuid>" data-socket="/ws/consults/<uuid>"
 *                  data-ice-servers='[{"urls": [...], "username"?, "credential"?}]' data-relay-only="false"
 *                  data-vital-names='{"8867-4": "Heart rate", ...}' data-heartbeat-s="1" data-gone-after-s="5"
 *                  data-unit-labels='{"mm[Hg]": "mmHg", ...}'>
 * Times on the page are UTC, 24-hour, as the hub writes them everywhere ("2026-01-31 14:05:09 UTC"); units as
 * clinicians write them (the labels come from hub/web/units.py; the vitals arrive in UCUM).
 *
 * Flow: camera and microphone (if refused or missing: receive only, and the page says so) -> WebSocket
 * to the hub (the hub then tells the kiosk who joined) -> the kiosk's `offer` -> setRemoteDescription, add
 * the local tracks, createAnswer, setLocalDescription, wait for ICE gathering to complete (at most 3 s:
 * aiortc does not trickle, so every candidate travels in the SDP) -> `answer` -> media.
 * `ping` every heartbeat; a hub silent for gone-after seconds is gone. End sends `end` and closes. A call not
 * connected data-connect-timeout-s (default 20) after the answer ends as `failed`.
 *
 * For tests, the section carries (refreshed every 500 ms from RTCPeerConnection.getStats()):
 *   data-state                   connecting | live | ended
 *   data-ended-reason            "" until ended; then the contract's reason (finished, cancelled, peer_gone,
 *                                failed, declined) or "hub_gone" (the socket to the hub closed or went silent)
 *   data-video-frames-decoded    inbound video framesDecoded (the patient's picture)
 *   data-audio-packets-received  inbound audio packetsReceived (the patient's voice)
 *   data-local-media             pending | camera+microphone | receive-only
 * window.consultCandidateTypes() resolves to the candidate types (host, srflx, prflx, relay) of the pair the call
 * uses, local then remote (e.g. ["relay", "relay"]); window.consultCall = {pc, socket, state()} for debugging.
 */
(function () {
  "use strict";

  const root = document.getElementById("call");
  if (!root) return;

  const consult = root.dataset.consult;
  const HEARTBEAT_MS = (parseFloat(root.dataset.heartbeatS) || 1) * 1000;
  const GONE_AFTER_MS = (parseFloat(root.dataset.goneAfterS) || 5) * 1000;
  const GATHER_CAP_MS = 3000;
  // A call not connected this long after the answer never will be (e.g. relay only and no TURN server answers):
  // end it as `failed` rather than leave both sides "connecting" (the kiosk then offers the patient a case).
  const CONNECT_TIMEOUT_MS = (parseFloat(root.dataset.connectTimeoutS) || 20) * 1000;
  const STATS_MS = 500;
  const REASONS = {
    finished: "The call has ended.",
    cancelled: "The patient left the call.",
    peer_gone: "The connection to the patient's kiosk was lost.",
    failed: "The video could not connect.",
    declined: "The call was declined.",
    hub_gone: "The connection to the hub was lost.",
  };
  const CLOSES = {
    4401: "Your session has ended: reload the page and log in again.",
    4403: "This call belongs to another provider.",
    4404: "This consult does not exist at your clinic.",
    4408: "The hub stopped hearing from this page.",
    4409: "This call is already open in another window.",
  };

  const el = {
    state: document.getElementById("call-state"),
    note: document.getElementById("call-media-note"),
    remote: document.getElementById("call-remote-video"),
    local: document.getElementById("call-local-video"),
    play: document.getElementById("call-play"),
    end: document.getElementById("call-end"),
    askVitals: document.getElementById("call-ask-vitals"),
    form: document.getElementById("call-message-form"),
    input: document.getElementById("call-message"),
    sent: document.getElementById("call-sent"),
    vitals: document.getElementById("call-vitals"),
  };

  function parseJson(text, fallback) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return fallback;
    }
  }
  const iceServers = parseJson(root.dataset.iceServers || "[]", []);
  const vitalNames = parseJson(root.dataset.vitalNames || "{}", {});
  const unitLabels = parseJson(root.dataset.unitLabels || "{}", {});

  function utcNow() {
    return new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function withUnit(value, unit) {
    const label = unit in unitLabels ? unitLabels[unit] : (unit || "").replace(/\{[^{}]*\}/g, "");
    return label ? value + " " + label : value;
  }

  let state = "connecting";
  let socket = null;
  let lastHeard = Date.now();
  let answered = false;
  let localStream = null;
  const remoteStream = new MediaStream();
  const timers = [];

  // An explicit list, possibly empty: never a browser default (no public STUN server learns of the call).
  const pc = new RTCPeerConnection({
    iceServers: iceServers,
    iceTransportPolicy: root.dataset.relayOnly === "true" ? "relay" : "all",
  });

  function say(text) {
    el.state.textContent = text;
  }

  function setState(next, reason) {
    if (state === "ended") return;
    state = next;
    root.dataset.state = next;
    if (next === "ended") root.dataset.endedReason = reason || "finished";
  }

  // ---- local media ------------------------------------------------------------------------------

  const mediaReady = (navigator.mediaDevices && navigator.mediaDevices.getUserMedia
    ? navigator.mediaDevices.getUserMedia({ video: true, audio: true })
    : Promise.reject(new Error("this browser offers no camera access"))
  ).then(
    function (stream) {
      localStream = stream;
      el.local.srcObject = stream;
      root.dataset.localMedia = "camera+microphone";
      return stream;
    },
    function (err) {
      root.dataset.localMedia = "receive-only";
      el.note.textContent =
        "Your camera or microphone could not be used (" + ((err && (err.name || err.message)) || "unknown error") +
        "): the patient will not see or hear you, but you can see and hear them.";
      el.note.hidden = false;
      return null;
    }
  );

  // ---- the peer connection -----------------------------------------------------------------------

  pc.addEventListener("track", function (event) {
    remoteStream.addTrack(event.track);
    if (el.remote.srcObject !== remoteStream) el.remote.srcObject = remoteStream;
    const playing = el.remote.play();
    if (playing && playing.catch) {
      playing.catch(function () {
        el.play.hidden = false; // autoplay with sound refused: one click starts it
      });
    }
  });

  el.play.addEventListener("click", function () {
    el.remote.play().then(function () {
      el.play.hidden = true;
    }, function () {});
  });

  pc.addEventListener("connectionstatechange", function () {
    if (state === "ended") return;
    if (pc.connectionState === "connected") {
      setState("live");
      say("Live: you are in the call with the patient.");
    } else if (pc.connectionState === "failed") {
      send({ type: "end", consult: consult, reason: "failed" });
      finish("failed");
    } else if (pc.connectionState === "disconnected") {
      say("The video is interrupted; waiting for it to come back…");
    }
  });

  function gathered(capMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      const timer = setTimeout(done, capMs);
      function check() {
        if (pc.iceGatheringState === "complete") done();
      }
      function done() {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  async function onOffer(sdp) {
    if (answered || state === "ended") return; // one offer per call
    answered = true;
    say("The patient's kiosk is calling; connecting the video…");
    try {
      const stream = await mediaReady;
      await pc.setRemoteDescription({ type: "offer", sdp: sdp });
      if (stream) {
        for (const track of stream.getTracks()) pc.addTrack(track, stream);
      }
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(GATHER_CAP_MS);
      send({ type: "answer", consult: consult, sdp: pc.localDescription.sdp });
      setTimeout(function () {
        if (state === "connecting") {
          send({ type: "end", consult: consult, reason: "failed" });
          finish("failed", "The video could not connect (no network path to the patient's kiosk was found).");
        }
      }, CONNECT_TIMEOUT_MS);
    } catch (err) {
      send({ type: "end", consult: consult, reason: "failed" });
      finish("failed", "The video could not connect (" + ((err && (err.name || err.message)) || "error") + ").");
    }
  }

  // ---- the socket to the hub ----------------------------------------------------------------------

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.socket);
    socket.addEventListener("open", function () {
      lastHeard = Date.now();
      if (state !== "ended") say("Connected. Waiting for the patient's kiosk to call…");
    });
    socket.addEventListener("message", function (event) {
      lastHeard = Date.now();
      const message = parseJson(event.data, null);
      if (!message || typeof message.type !== "string") return;
      if (message.type === "offer") onOffer(message.sdp);
      else if (message.type === "vitals") showVitals(message.vitals || []);
      else if (message.type === "ended") finish(message.reason);
      else if (message.type === "error") showError(message.message);
    });
    socket.addEventListener("close", function (event) {
      if (state !== "ended") finish("hub_gone", CLOSES[event.code]);
    });
  }

  // ---- what the provider does ---------------------------------------------------------------------

  function logSent(text) {
    const none = el.sent.querySelector(".muted");
    if (none) none.remove();
    const li = document.createElement("li");
    li.textContent = utcNow() + ": " + text;
    el.sent.appendChild(li);
  }

  el.end.addEventListener("click", function () {
    send({ type: "end", consult: consult, reason: "finished" });
    finish("finished", "You ended the call.");
  });

  el.askVitals.addEventListener("click", function () {
    if (state === "ended") return;
    send({ type: "form", consult: consult, form: "vitals" });
    logSent("asked the patient to take their vitals");
  });

  el.form.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = el.input.value.trim();
    if (!text || state === "ended") return;
    send({ type: "message", consult: consult, text: text.slice(0, 1000) });
    logSent("“" + text + "”");
    el.input.value = "";
  });

  function showVitals(vitals) {
    const none = el.vitals.querySelector(".call-vitals-none");
    if (none && vitals.length) none.remove();
    const at = utcNow();
    for (const v of vitals) {
      const tr = document.createElement("tr");
      for (const text of [at, vitalNames[v.code] || v.code, withUnit(String(v.value), v.unit)]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      el.vitals.appendChild(tr);
    }
  }

  function showError(text) {
    el.note.textContent = "The hub says: " + text;
    el.note.hidden = false;
  }

  // ---- the end ------------------------------------------------------------------------------------

  function finish(reason, words) {
    if (state === "ended") return;
    setState("ended", reason);
    say((words || REASONS[reason] || "The call has ended (" + reason + ").") + " You can close this page.");
    updateStats().finally(function () {
      for (const t of timers) clearInterval(t);
      pc.close();
      if (localStream) for (const track of localStream.getTracks()) track.stop();
      if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "call ended");
    });
    el.end.disabled = true;
    el.askVitals.disabled = true;
    for (const control of el.form.elements) control.disabled = true;
  }

  // ---- stats for tests, heartbeat -------------------------------------------------------------------

  function updateStats() {
    if (pc.signalingState === "closed") return Promise.resolve();
    return pc.getStats().then(
      function (report) {
        report.forEach(function (s) {
          if (s.type !== "inbound-rtp") return;
          const kind = s.kind || s.mediaType;
          if (kind === "video" && typeof s.framesDecoded === "number") {
            root.dataset.videoFramesDecoded = String(s.framesDecoded);
          } else if (kind === "audio" && typeof s.packetsReceived === "number") {
            root.dataset.audioPacketsReceived = String(s.packetsReceived);
          }
        });
      },
      function () {}
    );
  }

  timers.push(setInterval(updateStats, STATS_MS));
  timers.push(
    setInterval(function () {
      send({ type: "ping" });
      if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastHeard > GONE_AFTER_MS) {
        finish("hub_gone");
      }
    }, HEARTBEAT_MS)
  );

  window.consultCandidateTypes = function () {
    // The transport's selectedCandidatePairId names the pair media flows on. A pair's own `nominated` flag is
    // not enough: Chromium, as the controlled agent, may not mark the pair it uses as nominated for a while.
    return pc.getStats().then(function (report) {
      let pair = null;
      report.forEach(function (s) {
        if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
      });
      if (!pair) return [];
      const types = [];
      for (const id of [pair.localCandidateId, pair.remoteCandidateId]) {
        const candidate = report.get(id);
        if (candidate) types.push(candidate.candidateType);
      }
      return types;
    });
  };

  window.consultCall = {
    pc: pc,
    get socket() {
      return socket;
    },
    state: function () {
      return state;
    },
  };
  connect();
})();

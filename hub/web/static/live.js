// Live view: each .live-view[data-live-src] opens its server-sent event stream, shows every
// frame as it arrives, and closes the stream when the hub says the view ended (so the
// browser does not reconnect on its own). "Watch again" opens a new view.
"use strict";
(function () {
  function start(el) {
    const img = el.querySelector(".live-frame");
    const status = el.querySelector(".live-status");
    const meta = el.querySelector(".live-meta");
    const again = el.querySelector(".live-again");
    const msg = (name) => el.dataset["msg" + name] || name;
    let frames = 0;
    el.dataset.state = "waiting";
    el.dataset.frames = "0";
    el.dataset.openedMs = String(Math.round(performance.now()));
    delete el.dataset.firstFrameMs;
    status.textContent = msg("Waiting");
    again.hidden = true;
    const es = new EventSource(el.dataset.liveSrc);
    const stop = (text, state) => {
      es.close();
      el.dataset.state = state;
      status.textContent = text;
      again.hidden = false;
    };
    es.addEventListener("frame", (ev) => {
      const f = JSON.parse(ev.data);
      frames += 1;
      if (frames === 1) el.dataset.firstFrameMs = String(Math.round(performance.now()));
      img.src = "data:image/jpeg;base64," + f.jpeg;
      img.hidden = false;
      el.dataset.state = "live";
      el.dataset.frames = String(frames);
      el.dataset.lastBytes = String(f.bytes);
      status.textContent = msg("Live");
      meta.textContent = "#" + f.n + " · " + f.width + "×" + f.height + " · " +
        (f.bytes / 1000).toFixed(1) + " kB · " + new Date(f.taken_at).toLocaleTimeString() +
        " · " + Math.round(f.remaining_s) + " s";
    });
    es.addEventListener("end", (ev) => {
      const why = JSON.parse(ev.data).reason;
      stop(why === "signed_out" ? msg("SignedOut") : why === "hub" ? msg("Hub") : msg("Ended"), "ended");
    });
    es.onerror = () => {
      if (el.dataset.state !== "ended") stop(msg("Lost"), "lost");
    };
  }
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".live-view[data-live-src]").forEach((el) => {
      el.querySelector(".live-again").addEventListener("click", () => start(el));
      start(el);
    });
  });
})();

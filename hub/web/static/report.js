/* One-key report page: turn a tap on the grid map into lat/lon (inverting the hub's
   projection, see hub/web/svg.py MapFrame), and shrink a phone's photo to a JPEG the hub
   accepts before sending. No libraries, no network besides the form post. */
(function () {
  "use strict";
  // The page's messages in its language: app.js's translator (it runs first).
  var t = window.cityopsT;
  var map = document.getElementById("report-map");
  var lat = document.getElementById("lat"), lon = document.getElementById("lon");
  var text = document.getElementById("point-text"), pin = document.getElementById("map-pin");

  function place(x, y) {
    pin.setAttribute("cx", x.toFixed(1));
    pin.setAttribute("cy", y.toFixed(1));
  }

  if (map) {
    var f = map.dataset;
    var lon0 = +f.lon0, lat1 = +f.lat1, kx = +f.kx, scale = +f.scale, pad = +f.pad;
    if (lat.value && lon.value) {
      place((+lon.value - lon0) * kx * scale + pad, (lat1 - +lat.value) * scale + pad);
    }
    map.addEventListener("click", function (ev) {
      var pt = map.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      var p = pt.matrixTransform(map.getScreenCTM().inverse());
      var la = lat1 - (p.y - pad) / scale, lo = lon0 + (p.x - pad) / (kx * scale);
      lat.value = la.toFixed(6); lon.value = lo.toFixed(6);
      place(p.x, p.y);
      var cell = ev.target.closest ? ev.target.closest("[data-grid]") : null;
      text.textContent = t("report_point", { lat: lat.value, lon: lon.value }) +
        (cell ? t("report_point_grid", { grid: cell.dataset.grid }) : t("report_point_outside"));
    });
  }

  var input = document.getElementById("photo"), status = document.getElementById("photo-status");
  if (input && window.DataTransfer && window.HTMLCanvasElement) {
    var max = +input.dataset.maxBytes || 262144;
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (!file) { status.textContent = ""; return; }
      if (file.type === "image/jpeg" && file.size <= max) {
        status.textContent = t("report_photo_ready", { n: Math.ceil(file.size / 1024) });
        return;
      }
      status.textContent = t("report_shrinking");
      var img = new Image(), reader = new FileReader();  // a data: URL (the page's CSP allows no blob:)
      img.onload = function () {
        var side = 1280, quality = 0.8;
        function attempt() {
          var k = Math.min(1, side / Math.max(img.naturalWidth, img.naturalHeight));
          var c = document.createElement("canvas");
          c.width = Math.round(img.naturalWidth * k); c.height = Math.round(img.naturalHeight * k);
          c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
          c.toBlob(function (blob) {
            if (blob.size > max && side > 320) { side = Math.round(side * 0.75); quality = 0.7; attempt(); return; }
            var dt = new DataTransfer();
            dt.items.add(new File([blob], "photo.jpg", {type: "image/jpeg"}));
            input.files = dt.files;
            status.textContent = t("report_photo_ready", { n: Math.ceil(blob.size / 1024) });
          }, "image/jpeg", quality);
        }
        attempt();
      };
      img.onerror = function () { status.textContent = t("report_not_photo"); };
      reader.onload = function () { img.src = reader.result; };
      reader.onerror = img.onerror;
      reader.readAsDataURL(file);
    });
  }

  var form = document.getElementById("report-form"), button = document.getElementById("report-submit");
  if (form && button) {
    form.addEventListener("submit", function () { button.disabled = true; button.textContent = t("report_sending"); });
  }
})();

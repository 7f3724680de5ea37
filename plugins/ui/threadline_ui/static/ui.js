// threadline ui: the only script. Live conversations (server-sent events), confirmation of
// writes, and picking two checkpoints to compare. Pages work without it, except live updates.
"use strict";

function confirmWrites() {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

function pickTwo() {
  var form = document.getElementById("compare");
  if (!form) return;
  var button = document.getElementById("compare-button");
  var order = [];
  function update() {
    button.disabled = order.length !== 2;
  }
  form.querySelectorAll("input[name=c]").forEach(function (box) {
    box.addEventListener("change", function () {
      order = order.filter(function (b) { return b !== box; });
      if (box.checked) order.push(box);
      while (order.length > 2) order.shift().checked = false;
      update();
    });
  });
  update();
}

function follow() {
  var list = document.getElementById("messages");
  if (!list || !list.dataset.events || !window.EventSource) return;
  var state = document.getElementById("live-state");
  var source = new EventSource(list.dataset.events);
  source.addEventListener("open", function () {
    if (state) state.textContent = "live";
  });
  source.addEventListener("error", function () {
    if (state) state.textContent = "reconnecting…";
  });
  source.addEventListener("message", function (event) {
    var data = JSON.parse(event.data);
    var nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
    var holder = document.createElement("div");
    holder.innerHTML = data.html;
    var fresh = holder.firstElementChild;
    var old = document.getElementById("m-" + data.id);
    if (old) {
      var openMeta = old.querySelector("details[open]");
      old.replaceWith(fresh);
      if (openMeta) {
        var meta = fresh.querySelector("details");
        if (meta) meta.open = true;
      }
    } else {
      var empty = document.getElementById("no-messages");
      if (empty) empty.remove();
      list.appendChild(fresh);
    }
    if (nearBottom) window.scrollTo(0, document.body.scrollHeight);
  });
}

document.addEventListener("DOMContentLoaded", function () {
  confirmWrites();
  pickTwo();
  follow();
});

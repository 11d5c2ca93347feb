// Progressive enhancement only: every page works without this file.
"use strict";

// A double click must not post a form twice: the second POST of a magic link or a code would
// find the sign-in already used and show an error, although the first one signed the person
// in. (Buttons are not disabled, because a disabled button's name/value is not submitted.)
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.dataset.sent) {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
});

// Coming back with the Back button restores the page from cache: let its forms work again.
window.addEventListener("pageshow", function () {
  document.querySelectorAll("form[data-sent]").forEach(function (form) {
    delete form.dataset.sent;
  });
});

// The code field: a pasted "123 456" or "123-456" (or a code copied with its line break) is
// cleaned to its digits, and the form goes as soon as the sixth digit is there.
function watchCode(form) {
  var input = form.querySelector("input[name=code]");
  if (!input) {
    return;
  }
  input.addEventListener("input", function () {
    var digits = input.value.replace(/\D/g, "");
    if (digits.length > 6) {
      return; // not a code we can tidy: leave it for the person (and the server) to judge
    }
    if (digits !== input.value) {
      input.value = digits;
    }
    if (digits.length === 6 && !form.dataset.sent) {
      form.requestSubmit();
    }
  });
}

// "Send a new code" is disabled by the server until the mail interval has passed; count down
// in place and enable the button at zero. Without script the page says to reload.
function countDown(counter) {
  var left = parseInt(counter.dataset.countdown, 10);
  var button = document.getElementById("resend");
  var hint = document.getElementById("resend-hint");
  if (!(left > 0) || !button || !hint) {
    return;
  }
  var endsAt = Date.now() + left * 1000;
  var timer = window.setInterval(function () {
    left = Math.ceil((endsAt - Date.now()) / 1000);
    if (left > 0) {
      counter.textContent = left + (left === 1 ? " second" : " seconds");
      return;
    }
    window.clearInterval(timer);
    hint.textContent = "Check your spam folder, or ask for a new code.";
    button.disabled = false;
    // Said once through the polite status region, not every second.
    var status = document.getElementById("form-notice");
    if (status) {
      var note = document.createElement("p");
      note.className = "notice";
      note.textContent = "You can ask for a new code now.";
      status.replaceChildren(note);
    }
  }, 250);
}

// Browsers honour `autofocus` on the error only on a fresh load; make sure it has the focus.
function focusError() {
  var error = document.querySelector(".errors .error");
  if (error && document.activeElement !== error) {
    error.focus();
  }
}

// "Copy codes" on the recovery codes page: the codes, one per line, read from the list the
// page shows (they are never put anywhere else: no attribute, no URL, no storage). Where the
// clipboard is refused or missing (a plain-HTTP origin, an old browser), the codes are
// selected for the person to copy themselves.
function copyCodes(button) {
  var list = document.getElementById("recovery-codes");
  var status = document.getElementById("copy-status");
  if (!list || !status) {
    return;
  }
  function failed() {
    window.getSelection().selectAllChildren(list);
    status.textContent = "Select the codes and copy them";
  }
  button.addEventListener("click", function () {
    var codes = Array.prototype.map.call(list.querySelectorAll("code"), function (code) {
      return code.textContent.trim();
    });
    status.textContent = "";
    if (!navigator.clipboard || !navigator.clipboard.writeText) {
      failed();
      return;
    }
    navigator.clipboard.writeText(codes.join("\n")).then(function () {
      status.textContent = "Copied";
    }, failed);
  });
  button.hidden = false;
}

focusError();
document.querySelectorAll("form[data-code-form]").forEach(watchCode);
document.querySelectorAll("[data-countdown]").forEach(countDown);
document.querySelectorAll("#copy-codes").forEach(copyCodes);

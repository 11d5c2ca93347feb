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

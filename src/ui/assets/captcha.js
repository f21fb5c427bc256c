// Portcullis: fills in a reCAPTCHA v3 token when the form is sent. reCAPTCHA v3 scores without
// a widget, so its token has to be asked for; the page allows no inline script, hence this file.
(function () {
  "use strict";
  var input = document.querySelector("input[data-captcha-v3]");
  if (!input || !input.form) {
    return;
  }
  var form = input.form;
  form.addEventListener("submit", function (event) {
    if (input.value || typeof grecaptcha === "undefined") {
      return;
    }
    event.preventDefault();
    grecaptcha.ready(function () {
      grecaptcha
        .execute(input.getAttribute("data-captcha-v3"), {
          action: input.getAttribute("data-action"),
        })
        .then(function (token) {
          input.value = token;
          form.submit();
        });
    });
  });
})();

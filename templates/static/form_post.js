// Submits the form_post response (OAuth 2.0 Form Post Response Mode) without a click.
// Without JavaScript the page shows a Continue button instead.
document.getElementById("form-post").submit();

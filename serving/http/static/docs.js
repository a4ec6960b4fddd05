// Starts Swagger UI on /docs with the document at the URL the page names. Kept out of
// the page so a Content-Security-Policy without 'unsafe-inline' scripts allows it.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // No badge from validator.swagger.io: the page loads nothing from other hosts.
    validatorUrl: null,
    tryItOutEnabled: true,
    displayRequestDuration: true,
  });
});

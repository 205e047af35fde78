// Renders the OpenAPI document with the vendored Swagger UI. It talks to this site only: no
// validator badge (validatorUrl null), and the Content-Security-Policy allows nothing else.
(function () {
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.getAttribute("data-spec-url"),
    domNode: element,
    validatorUrl: null,
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 1,
    defaultModelExpandDepth: 3,
    displayRequestDuration: true,
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
})();

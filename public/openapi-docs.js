/* global window */
// Starts Swagger UI on /api/docs (a file, not an inline script: the CSP allows only this origin).
window.addEventListener('DOMContentLoaded', function () {
  window.SwaggerUIBundle({
    url: '/api/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    persistAuthorization: false,
  });
});

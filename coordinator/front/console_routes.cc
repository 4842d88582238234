// File: coordinator/front/console_routes.cc
// The web console's routes on the HTTP door: its page and assets under /console/, and its JSON
// API under /console/api/ (console_api.h), with the console's own access rules.
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/json_dump.h"
#include "coordinator/front/console_assets.h"
#include "coordinator/front/http_front_door.h"
#include "coordinator/front/openai_codec.h"

namespace loom {

using http_codec::ErrorResponse;
using http_codec::JsonResponse;
using http_codec::PercentDecode;
using json = nlohmann::json;

// Long on purpose: the console's route table, one registration per endpoint.
void HttpFrontDoor::ConsoleRoutes() {
  server_.Handle(
      "GET", "/console",
      [](HttpExchange&) {
        HttpResponse res;
        res.status = 308;
        res.content_type = "text/plain";
        res.SetHeader("Location", "/console/");
        return res;
      },
      {.on_io_thread = true});
  HttpHeadFilter viewer = [this](HttpRequest& req) -> std::optional<HttpResponse> {
    absl::StatusOr<ConsoleApi::Viewer> v = console_->Authenticate(req.Header("Authorization"));
    if (!v.ok()) return ErrorResponse(v.status());
    req.principal = ConsoleApi::Encode(*v);
    return std::nullopt;
  };
  auto json_or_error = [](const absl::StatusOr<json>& j) {
    return j.ok() ? JsonResponse(*j) : ErrorResponse(j.status());
  };
  auto who = [](HttpExchange& ex) { return ConsoleApi::Decode(ex.request().principal); };
  server_.Handle("GET", "/console/api/whoami",
                 [this, who](HttpExchange& ex) { return JsonResponse(console_->WhoAmI(who(ex))); },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/mesh",
                 [this, who](HttpExchange& ex) { return JsonResponse(console_->Mesh(who(ex))); },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/requests",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Requests(who(ex)));
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/requests/*",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Request(who(ex), PercentDecode(ex.request().suffix)));
                 },
                 {.head_filter = viewer});
  server_.Handle("POST", "/console/api/explain",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Explain(who(ex), ex.request().body));
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/money",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Money(who(ex)));
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/verify",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Verify(who(ex)));
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/payouts.csv",
                 [this, who](HttpExchange& ex) {
                   absl::StatusOr<std::string> csv = console_->PayoutsCsv(who(ex));
                   if (!csv.ok()) return ErrorResponse(csv.status());
                   HttpResponse res;
                   res.content_type = "text/csv; charset=utf-8";
                   res.body = *std::move(csv);
                   res.SetHeader("Content-Disposition", "attachment; filename=\"loom-payouts.csv\"");
                   return res;
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/affinities",
                 [this, who](HttpExchange& ex) { return JsonResponse(console_->Affinities(who(ex))); },
                 {.head_filter = viewer});  // After the API: a route's trailing * is matched in the order routes were added.
  server_.Handle(
      "GET", "/console/*",
      [](HttpExchange& ex) {
        const std::string name = ex.request().suffix.empty() ? "index.html" : ex.request().suffix;
        for (const ConsoleAsset& asset : ConsoleAssets()) {
          if (name != asset.path) continue;
          HttpResponse res;
          res.content_type = asset.content_type;
          res.body = std::string(asset.body);
          res.SetHeader("Content-Security-Policy",
                        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                        "img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; "
                        "frame-ancestors 'none'; base-uri 'none'");
          res.SetHeader("X-Content-Type-Options", "nosniff");
          res.SetHeader("Referrer-Policy", "no-referrer");
          res.SetHeader("Cache-Control", "no-cache");
          return res;
        }
        return ErrorResponse(404, absl::StrCat("no console file '", name, "'"));
      },
      {.on_io_thread = true});
}

// POST /v1/feedback {"request_id": "...", "rating": "good"|"bad", "sub_task_id": "..."}: the
// id as the answer gave it (x-request-id), or the answer's own id ("chatcmpl-...", "cmpl-...",
// "resp_...").

}  // namespace loom

// File: coordinator/front/loom_routes.cc
// Loom's own endpoints on the HTTP door, beside the OpenAI surface: outcome feedback
// (/v1/feedback, feedback.h), the learned affinities and a provider's earnings.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/categories.h"
#include "coordinator/front/console_api.h"
#include "coordinator/front/http_front_door.h"
#include "coordinator/front/openai_codec.h"
#include "nlohmann/json.hpp"

namespace loom {

using http_codec::ErrorResponse;
using http_codec::JsonResponse;
using json = nlohmann::json;

void HttpFrontDoor::LoomRoutes(const HttpHeadFilter& authenticate) {
  server_.Handle("POST", "/v1/feedback", [this](HttpExchange& ex) { return Feedback(ex); },
                 {.head_filter = authenticate});
  server_.Handle(
      "GET", "/loom/v1/affinities",
      [this](HttpExchange&) {
        return JsonResponse(
            json{{"object", "list"}, {"data", ConsoleApi::AffinityRows(runner_->Affinities())}});
      },
      {.head_filter = authenticate});
  // A provider sees its own earnings with its own key (never another provider's).
  const HttpHeadFilter authenticate_provider = Authenticating(&Authenticator::ProviderFor);
  server_.Handle(
      "GET", "/loom/v1/earnings",
      [this](HttpExchange& ex) {
        absl::StatusOr<PayoutRow> row = auth_->EarningsOf(ex.request().principal);
        if (!row.ok()) return ErrorResponse(row.status());
        return JsonResponse(json{{"provider", row->provider_id},
                                 {"earned_micro", row->earned_micro},
                                 {"tokens", row->tokens},
                                 {"requests", row->requests},
                                 {"devices", row->devices},
                                 {"paid_out_micro", row->paid_out_micro},
                                 {"unpaid_micro", row->unpaid_micro}});
      },
      {.head_filter = authenticate_provider});
}

HttpResponse HttpFrontDoor::Feedback(HttpExchange& exchange) {
  const json j = json::parse(exchange.request().body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return ErrorResponse(absl::InvalidArgumentError("the body is not a JSON object"));
  }
  auto text = [&](const char* field, bool required) -> absl::StatusOr<std::string> {
    if (!j.contains(field) || j[field].is_null()) {
      if (!required) return std::string();
      return absl::InvalidArgumentError(absl::StrCat("'", field, "' is required"));
    }
    if (!j[field].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("'", field, "' must be a string"));
    }
    return j[field].get<std::string>();
  };
  absl::StatusOr<std::string> id = text("request_id", true);
  absl::StatusOr<std::string> rating = text("rating", true);
  absl::StatusOr<std::string> sub_task = text("sub_task_id", false);
  for (const auto* field : {&id, &rating, &sub_task}) {
    if (!field->ok()) return ErrorResponse(field->status());
  }
  v1::FeedbackRequest request;
  request.set_request_id(*id);
  request.set_sub_task_id(*sub_task);
  if (*rating == "good") request.set_rating(v1::FEEDBACK_RATING_GOOD);
  if (*rating == "bad") request.set_rating(v1::FEEDBACK_RATING_BAD);
  if (request.rating() == v1::FEEDBACK_RATING_UNSPECIFIED) {
    return ErrorResponse(absl::InvalidArgumentError("'rating' must be \"good\" or \"bad\""));
  }
  const std::string& client = exchange.request().principal;
  absl::StatusOr<v1::FeedbackResponse> result = runner_->Feedback(client, request);
  for (absl::string_view prefix : {"chatcmpl-", "cmpl-", "resp_"}) {
    if (!absl::IsNotFound(result.status()) || !absl::StartsWith(*id, prefix)) continue;
    v1::FeedbackRequest bare = request;
    bare.set_request_id(id->substr(prefix.size()));
    result = runner_->Feedback(client, bare);
    if (absl::IsNotFound(result.status())) {
      result = absl::NotFoundError(absl::StrCat("no settled request ", *id, " of client ", client));
    }
  }
  if (!result.ok()) return ErrorResponse(result.status());
  json applied = json::array();
  for (const v1::OutcomeChange& c : result->applied()) {
    applied.push_back({{"model", c.model()},
                       {"category", CategoryName(c.category())},
                       {"good", c.good()},
                       {"bad", c.bad()}});
  }
  return JsonResponse(json{{"object", "loom.feedback"},
                           {"request_id", *id},
                           {"rating", *rating},
                           {"applied", std::move(applied)}});
}

}  // namespace loom

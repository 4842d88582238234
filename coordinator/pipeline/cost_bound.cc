// What a request may cost before it runs (request_runner.h, "Budgets"): the answer's token
// bound, the cost bound reserved on the client's account, a policy's max_cost, and the devices
// a client who cannot afford the whole mesh is served by.
#include <algorithm>
#include <functional>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "coordinator/pipeline/contributions.h"
#include "coordinator/pipeline/request_runner.h"
#include "ledger/pricing.h"

namespace loom {

int64_t RequestRunner::AnswerTokenBound(const v1::CompleteRequest& request) const {
  if (request.max_tokens() > 0) return request.max_tokens();
  int64_t bound = 0;
  registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) {
      const int64_t limit = g->model().max_output_tokens() > 0
                                ? g->model().max_output_tokens()
                                : options_.unadvertised_max_output_tokens;
      bound = std::max(bound, limit);
    }
  });
  return std::min(bound > 0 ? bound : options_.unadvertised_max_output_tokens,
                  options_.max_output_tokens);
}

absl::StatusOr<int64_t> RequestRunner::CostBound(const Analysis& analysis, int64_t max_tokens,
                                                 int64_t price,
                                                 const SelectionPolicy* policy) const {
  if (price < 0) {
    price = 0;
    registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
      for (const ModelGroup* g : groups) {
        if (policy && policy->PriceFails(g->model())) continue;
        price = std::max(price, PricePer1kMicro(g->model()));
      }
    });
  }
  int64_t tokens = max_tokens;
  if (analysis.kind == v1::PLAN_KIND_COMPETE) {
    tokens = options_.compete.k * max_tokens + 16;  // candidates and a judge
  } else if (analysis.kind == v1::PLAN_KIND_COMPILED) {
    // decomposer + the largest graph it may return + a synthesis as long as all its parts
    const int64_t graph =
        options_.decomposer.max_sub_tasks * 4 * options_.decomposer.sub_task_tokens;
    tokens = 1024 + graph + (graph + 128);
  }
  // Rounded up, so the bound is never below what CreditsForTokens can charge; the fee on top,
  // so that a request admitted is a request that can settle. Checked: prices are bounded at
  // registration, and a bound that still overflows is refused, never wrapped.
  int64_t product = 0, bound = 0;
  if (__builtin_mul_overflow(tokens, price, &product) || product > INT64_MAX - 999 ||
      __builtin_add_overflow((product + 999) / 1000, ledger_->FeeFor((product + 999) / 1000), &bound)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the cost bound of ", tokens, " tokens at ", price,
        " micro-credits per 1k overflows; ask for fewer max_tokens"));
  }
  return bound;
}

absl::Status RequestRunner::FitMaxCost(const Analysis& analysis, int64_t max_tokens, int choices,
                                       RequestPolicy* policy, int64_t* bound) const {
  const int64_t cap = policy->max_cost_micro / std::max(1, choices);
  if (policy->max_cost_micro <= 0 || *bound <= cap) return absl::OkStatus();
  std::set<int64_t, std::greater<>> prices;
  registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) {
      if (!policy->all.PriceFails(g->model())) prices.insert(PricePer1kMicro(g->model()));
    }
  });
  for (int64_t price : prices) {
    absl::StatusOr<int64_t> at = CostBound(analysis, max_tokens, price);
    if (!at.ok() || *at > cap) continue;
    *bound = *at;
    policy->all.max_price_per_1k_micro = policy->wide.max_price_per_1k_micro = price;
    return absl::OkStatus();
  }
  const int64_t cheapest = prices.empty() ? 0 : *prices.rbegin();
  absl::StatusOr<int64_t> at_cheapest = CostBound(analysis, max_tokens, cheapest);
  return PolicyUnmetError(absl::StrCat(
      "no device meets the policy ", policy->name, ": cost <= ",
      FormatCredits(policy->max_cost_micro), " credits is below this request's cost bound (",
      at_cheapest.ok() ? FormatCredits(*at_cheapest * std::max(1, choices)) : std::string("?"),
      " credits for up to ", max_tokens, " output tokens at the cheapest price allowed, ",
      FormatCredits(cheapest), " credits/1k); raise max_cost or lower max_tokens; nothing was "
      "charged"));
}

v1::CompleteRequest RequestRunner::WithNamedPolicy(const v1::CompleteRequest& request) const {
  v1::CompleteRequest out = request;
  if (out.policy().name().empty()) out.mutable_policy()->set_name(request.model());
  out.clear_model();
  return out;
}

RequestRunner::Affordable RequestRunner::AffordableFor(const std::string& client_account,
                                                      const Analysis& analysis,
                                                      int64_t max_tokens, int64_t bound) const {
  Affordable out{bound, {}};
  absl::StatusOr<int64_t> available = ledger_->Available(client_account);
  if (!available.ok() || *available >= bound) return out;
  std::set<int64_t, std::greater<>> prices;
  registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) prices.insert(PricePer1kMicro(g->model()));
  });
  for (int64_t price : prices) {
    absl::StatusOr<int64_t> at = CostBound(analysis, max_tokens, price);
    if (!at.ok() || *at > *available) continue;
    out.bound = *at;
    registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
      for (const ModelGroup* g : groups) {
        if (PricePer1kMicro(g->model()) <= price) continue;
        g->ForEachHealthy([&](const v1::DeviceInfo& d, double) {
          out.too_dear.insert(d.device_id());
          return true;
        });
      }
    });
    return out;
  }
  return out;  // not even the cheapest: the reservation refuses it (402)
}

absl::StatusOr<RequestRunner::Budget> RequestRunner::PlanBudget(
    const v1::CompleteRequest& request, const std::string& request_id,
    const std::string& client_account, int64_t max_tokens, int choices, bool may_consult,
    RequestPolicy* policy, Analysis* analysis) const {
  Budget out;
  LOOM_ASSIGN_OR_RETURN(out.bound, CostBound(*analysis, max_tokens, -1, &policy->all));
  // A router call is reserved for, and so is a compiled plan when the client can afford one
  // (the router may find several asks). Not under a cost limit: the bound is kept to the plan.
  out.consult = may_consult && policy->max_cost_micro == 0;
  if (out.consult) {
    Analysis routed = *analysis;
    routed.kind = v1::PLAN_KIND_PASSTHROUGH;
    LOOM_ASSIGN_OR_RETURN(int64_t route_bound, CostBound(routed, options_.router.max_tokens));
    routed.kind = v1::PLAN_KIND_COMPILED;
    LOOM_ASSIGN_OR_RETURN(int64_t compiled_bound, CostBound(routed, max_tokens));
    absl::StatusOr<int64_t> available = ledger_->Available(client_account);
    out.may_compile = analysis->kind == v1::PLAN_KIND_PASSTHROUGH && available.ok() &&
                      *available >= compiled_bound + route_bound;
    out.bound = (out.may_compile ? std::max(out.bound, compiled_bound) : out.bound) + route_bound;
  }
  // A device priced above the client's budget is left out for this client, rather than the
  // client refused for the whole mesh. (A request pinned to a model keeps the mesh's bound.)
  if (!request.model().empty() || !request.family().empty()) {
    // Pinned: the devices that can serve it set the price, not the rest of the mesh.
    int64_t pinned_price = -1;
    registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
      for (const ModelGroup* g : groups) {
        if ((request.model().empty() || g->model().name() == request.model()) &&
            (request.family().empty() || g->model().family() == request.family()) &&
            !policy->all.PriceFails(g->model())) {
          pinned_price = std::max(pinned_price, PricePer1kMicro(g->model()));
        }
      }
    });
    if (pinned_price >= 0) {
      LOOM_ASSIGN_OR_RETURN(out.bound, CostBound(*analysis, max_tokens, pinned_price));
    }
  } else {
    Affordable affordable = AffordableFor(client_account, *analysis, max_tokens, out.bound);
    if (!affordable.too_dear.empty()) {
      spdlog::info("request {}: {} cannot afford {} device(s); served by the others",
                   request_id, client_account, affordable.too_dear.size());
      out.bound = affordable.bound;  // sized for the plan alone: no router call on a tight budget
      out.too_dear = std::move(affordable.too_dear);
      if (out.consult) {
        out.consult = false;
        analysis->reasons.push_back(
            "router not asked: the client's credits do not cover the whole mesh; the "
            "classifier's verdict stands");
      }
    }
  }
  LOOM_RETURN_IF_ERROR(FitMaxCost(*analysis, max_tokens, choices, policy, &out.bound));
  // Every choice is an answer the client pays for.
  if (__builtin_mul_overflow(out.bound, static_cast<int64_t>(choices), &out.bound)) {
    return absl::OutOfRangeError("the cost bound of this request overflows");
  }
  return out;
}

}  // namespace loom

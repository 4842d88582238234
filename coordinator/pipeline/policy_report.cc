#include "coordinator/pipeline/policy_report.h"

#include "ledger/pricing.h"

namespace loom {

v1::PolicyReport PolicyReportFor(const RequestPolicy& policy, const AttemptLog& log) {
  v1::PolicyReport report;
  report.set_name(policy.name);
  for (std::string& limit : policy.LimitTexts()) report.add_limits(std::move(limit));
  for (std::string& note : log.policy_notes()) report.add_applied(std::move(note));
  int64_t paid = 0, cheapest = 0, best = 0;
  double carbon = 0;
  int unknown = 0;
  log.ForEachDelivered([&](const AttemptLog::Delivered& d) {
    const Selection& s = d.call.chosen;
    const int64_t tokens = d.call.tokens;
    paid += CreditsForTokens(tokens, PricePer1kMicro(s.model));
    cheapest += CreditsForTokens(tokens, s.cheapest_price_per_1k_micro);
    best += CreditsForTokens(tokens, s.best_affinity_price_per_1k_micro);
    if (s.carbon_g_per_kwh > 0) {
      carbon += EstimatedCarbonGrams(tokens, s.model.parameters_b(), s.carbon_g_per_kwh);
    } else if (tokens > 0) {
      ++unknown;
    }
  });
  report.set_paid_micro(paid);
  report.set_cheapest_micro(cheapest);
  report.set_best_affinity_micro(best);
  report.set_carbon_g(carbon);
  report.set_carbon_unknown_calls(unknown);
  return report;
}

}  // namespace loom

#include "coordinator/cli/loom_cli.h"

#include "common/categories.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/categories.h"
#include "common/table.h"
#include "common/utf8.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

std::string EnumSuffix(const std::string& name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::StripPrefix(name, prefix));
}

// The first 8 characters of a UUID; other ids ("synthesis", "compete-2") as they are.
std::string Short(const std::string& id) { return id.size() == 36 ? id.substr(0, 8) : id; }

// What an operator should know about a device beyond its state.
std::string Flags(const v1::DeviceInfo& d) {
  std::vector<std::string> flags;
  if (!d.load().upstream_problem().empty()) {
    flags.push_back(absl::StrCat("upstream: ", d.load().upstream_problem()));
  }
  if (d.usage_overclaims() > 0) {
    flags.push_back(absl::StrCat("overclaimed usage ", d.usage_overclaims(), "x"));
  }
  return absl::StrJoin(flags, "; ");
}

}  // namespace

std::string FormatDevices(const v1::ListDevicesResponse& devices) {
  if (devices.devices().empty()) return "no devices in the mesh\n";
  std::vector<Row> rows;
  for (const auto& d : devices.devices()) {
    std::vector<std::string> models;
    for (const auto& m : d.models()) {
      models.push_back(absl::StrFormat("%s (%s, %gB)", m.name(), m.family(), m.parameters_b()));
    }
    rows.push_back({d.device_id() + (d.simulated() ? " [sim]" : ""), d.provider_id(),
                    EnumSuffix(v1::DeviceState_Name(d.state()), "DEVICE_STATE_"),
                    absl::StrFormat("%d/%d", std::max(d.load().active(), d.coordinator_inflight()),
                                    d.load().max_concurrency()),
                    absl::StrFormat("%.0f", d.load().tokens_per_second()),
                    absl::StrJoin(models, ", "), TrustTierName(d.trust()),
                    d.region().empty() ? "-" : d.region(),
                    d.carbon_g_per_kwh() > 0 ? absl::StrFormat("%.0f", d.carbon_g_per_kwh()) : "-",
                    d.observed_ttft_ms() > 0 ? absl::StrFormat("%.0f", d.observed_ttft_ms()) : "-",
                    d.address(), Flags(d)});
  }
  // What policies select on: the operator's trust tier, the declared region and carbon
  // intensity (gCO2e/kWh), the time to first token this coordinator measured.
  return FormatTextTable({"device", "provider", "state", "load", "tok/s", "models", "trust",
                          "region", "gCO2/kWh", "ttft ms", "address", "flags"},
                         rows);
}

std::string FormatPlan(const v1::CompilationPlan& plan) {
  std::string out = absl::StrCat("plan ", EnumSuffix(v1::PlanKind_Name(plan.kind()), "PLAN_KIND_"),
                                 " for request ", plan.request_id(), " (~",
                                 plan.estimated_tokens(), " tokens)\n");
  std::vector<std::string> categories;
  for (const auto& c : plan.categories()) {
    categories.push_back(absl::StrFormat(
        "%s %.2f", EnumSuffix(v1::TaskCategory_Name(c.category()), "TASK_CATEGORY_"), c.score()));
  }
  if (!categories.empty()) absl::StrAppend(&out, "  categories: ", absl::StrJoin(categories, ", "), "\n");
  for (const auto& r : plan.reasons()) absl::StrAppend(&out, "  because: ", r, "\n");
  if (!plan.decomposer().empty()) absl::StrAppend(&out, "  decomposer: ", plan.decomposer(), "\n");
  std::vector<Row> rows;
  for (const auto& t : plan.sub_tasks()) {
    std::string device, model, why;
    for (const auto& a : plan.assignments()) {
      if (a.sub_task_id() == t.id()) {
        device = a.device_id();
        model = a.model();
        why = a.reason();
      }
    }
    std::vector<std::string> deps;
    for (const auto& d : t.depends_on()) deps.push_back(Short(d));
    std::string prompt = t.prompt().substr(0, t.prompt().find('\n'));
    if (prompt.size() > 48) prompt = TruncateUtf8(prompt, 45, "...");
    // A sub-task carrying the client's own material is bound by its trust and region limits.
    rows.push_back({Short(t.id()),
                    absl::StrCat(EnumSuffix(v1::TaskCategory_Name(t.category()), "TASK_CATEGORY_"),
                                 t.private_data() ? " (private)" : ""),
                    absl::StrCat(t.order_index()), absl::StrJoin(deps, ","),
                    absl::StrCat(t.estimated_tokens()), device, model, prompt});
  }
  if (plan.kind() == v1::PLAN_KIND_COMPETE) {
    for (const auto& a : plan.assignments()) {
      rows.push_back({a.sub_task_id(), "", "0", "", "", a.device_id(), a.model(), a.reason()});
    }
  }
  absl::StrAppend(&out, FormatTextTable({"sub-task", "category", "order", "depends on", "tokens",
                                         "device", "model", "prompt"},
                                        rows));
  for (const auto& a : plan.assignments()) {
    if (plan.kind() != v1::PLAN_KIND_COMPETE && !a.reason().empty()) {
      absl::StrAppend(&out, "  ", Short(a.sub_task_id()), " why: ", a.reason(), "\n");
    }
  }
  if (!plan.synthesis_prompt().empty()) {
    absl::StrAppend(&out, "  synthesis: ", plan.synthesis_prompt(), "\n");
  }
  return out;
}

std::string FormatSummary(const v1::CompleteResponse& response) {
  std::vector<std::string> served;
  for (const auto& c : response.contributions()) {
    served.push_back(absl::StrCat(c.device_id(), " (", c.model(), ")"));
  }
  int failed = 0;
  for (const auto& a : response.attempts()) failed += a.outcome() == v1::ATTEMPT_OUTCOME_FAILED;
  std::string out = absl::StrCat(
      "request ", response.request_id(), " served by ", absl::StrJoin(served, ", "), ", ",
      response.usage().completion_tokens(), " tokens, cost ", FormatCredits(response.cost_micro()),
      " credits", failed ? absl::StrCat(", ", failed, " failed attempt(s) retried") : "",
      ", coordinator overhead ", response.coordinator_overhead_us(), " us\n");
  if (response.has_compete()) {
    absl::StrAppend(&out, "compete winner ", response.compete().winner_sub_task_id(), " by ",
                    response.compete().method(), ": ", response.compete().reason(), "\n");
    if (!response.compete().payout_rule().empty()) {
      absl::StrAppend(&out, "payout: ", response.compete().payout_rule(), "\n");
    }
  }
  if (response.has_policy()) {
    const v1::PolicyReport& p = response.policy();
    absl::StrAppend(&out, "policy ", p.name(),
                    p.limits().empty() ? "" : absl::StrCat(" (", absl::StrJoin(p.limits(), "; "), ")"),
                    ": paid ", FormatCredits(p.paid_micro()), " credits before fees; cheapest allowed ",
                    FormatCredits(p.cheapest_micro()), ", best affinity ",
                    FormatCredits(p.best_affinity_micro()),
                    p.carbon_g() > 0 ? absl::StrFormat("; carbon about %.4f g (estimate)", p.carbon_g())
                                     : std::string("; carbon unknown"),
                    p.carbon_unknown_calls() > 0
                        ? absl::StrCat(p.carbon_g() > 0 ? " + " : " (", p.carbon_unknown_calls(),
                                       " call(s) on devices that declare no intensity",
                                       p.carbon_g() > 0 ? "" : ")")
                        : "",
                    "\n");
    for (const std::string& a : p.applied()) absl::StrAppend(&out, "  limits on ", a, "\n");
  }
  if (!response.synthesis_note().empty()) absl::StrAppend(&out, "note: ", response.synthesis_note(), "\n");
  return out;
}

std::string FormatAffinities(const v1::ListAffinitiesResponse& affinities) {
  if (affinities.affinities().empty()) return "no models in the mesh and no outcomes observed\n";
  std::vector<Row> rows;
  for (const auto& a : affinities.affinities()) {
    const bool observed = a.good() > 0 || a.bad() > 0;
    rows.push_back({a.model(), a.family().empty() ? "-" : a.family(),
                    EnumSuffix(v1::TaskCategory_Name(a.category()), "TASK_CATEGORY_"),
                    absl::StrFormat("%.2f", a.prior()),
                    observed ? absl::StrFormat("%g", a.good()) : "",
                    observed ? absl::StrFormat("%g", a.bad()) : "",
                    absl::StrFormat("%.2f", a.blended())});
  }
  return FormatTextTable({"model", "family", "category", "prior", "good", "bad", "blended"}, rows);
}

std::string FormatFeedback(const v1::FeedbackResponse& response, bool good) {
  std::string out = absl::StrCat("request ", response.request_id(), " rated ",
                                 good ? "good" : "bad");
  if (response.applied().empty()) return out + " (no model's affinity moved)\n";
  std::vector<std::string> parts;
  for (const auto& c : response.applied()) {
    parts.push_back(absl::StrFormat("%s/%s +%g %s", c.model(),
                                    EnumSuffix(v1::TaskCategory_Name(c.category()), "TASK_CATEGORY_"),
                                    good ? c.good() : c.bad(), good ? "good" : "bad"));
  }
  return absl::StrCat(out, ": ", absl::StrJoin(parts, ", "), "\n");
}

std::string FormatEvent(const v1::SubTaskEvent& e) {
  const std::string who = absl::StrCat(Short(e.sub_task_id()), " attempt ",
                                       e.attempt(), " on ", e.device_id(), " (", e.model(), ")");
  switch (e.kind()) {
    case v1::SubTaskEvent::KIND_STARTED:
      return absl::StrCat("[start] ", who, "\n");
    case v1::SubTaskEvent::KIND_FINISHED:
      return absl::StrCat("[done]  ", who, "\n");
    case v1::SubTaskEvent::KIND_RETRIED:
      return absl::StrCat("[retry] ", who, " failed: ", e.reason(), "\n");
    case v1::SubTaskEvent::KIND_FAILED:
      return absl::StrCat("[fail]  ", who, "\n");
    default:
      return "";
  }
}

}  // namespace loom

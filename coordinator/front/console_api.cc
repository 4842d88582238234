// File: coordinator/front/console_api.cc
#include "coordinator/front/console_api.h"

#include <openssl/crypto.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/auto_model.h"
#include "common/categories.h"
#include "common/json_config.h"
#include "common/status_macros.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

using json = nlohmann::json;

json Proto(const google::protobuf::Message& message) {
  return json::parse(ToJson(message, false), nullptr, false);
}

int64_t Ms(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixMillis(t); }

std::string KindName(v1::PlanKind kind) {
  switch (kind) {
    case v1::PLAN_KIND_PASSTHROUGH: return "passthrough";
    case v1::PLAN_KIND_COMPILED: return "compiled";
    case v1::PLAN_KIND_COMPETE: return "compete";
    default: return "";
  }
}

json Summary(const RequestLog::Entry& e) {
  const v1::CompleteResponse& r = e.response;
  json categories = json::array();
  for (const v1::SubTask& t : r.plan().sub_tasks()) categories.push_back(CategoryName(t.category()));
  if (categories.empty() && r.plan().categories_size() > 0) {  // passthrough, compete: the top one
    categories.push_back(CategoryName(r.plan().categories(0).category()));
  }
  const absl::Time end = e.running ? absl::Now() : e.finished;
  return json{{"id", e.id},
              {"displayId", e.display_id},
              {"client", e.client},
              {"model", e.model.empty() ? kAutoModel : e.model},
              {"prompt", e.prompt},
              {"planKind", KindName(r.plan().kind())},
              {"categories", std::move(categories)},
              {"costMicro", r.cost_micro()},
              {"latencyMs", absl::ToDoubleMilliseconds(end - e.started)},
              {"startedMs", Ms(e.started)},
              {"running", e.running},
              {"outcome", e.running ? "running" : e.error.empty() ? "ok" : "failed"},
              {"error", e.error}};
}

absl::Status NotForProviders(const ConsoleApi::Viewer& viewer) {
  if (viewer.role == ConsoleApi::Role::kProvider) {
    return absl::PermissionDeniedError("a provider's key sees the mesh and its own earnings only");
  }
  return absl::OkStatus();
}

std::string ClientFilter(const ConsoleApi::Viewer& viewer) {
  return viewer.role == ConsoleApi::Role::kOperator ? "" : ClientAccount(viewer.name);
}

}  // namespace

ConsoleApi::ConsoleApi(DeviceRegistry* registry, RequestRunner* runner, const RequestLog* recent,
                       const Authenticator* auth, LedgerAdmin* ledger, std::string operator_key)
    : registry_(registry),
      runner_(runner),
      recent_(recent),
      auth_(auth),
      ledger_(ledger),
      operator_key_(std::move(operator_key)) {}

absl::StatusOr<ConsoleApi::Viewer> ConsoleApi::Authenticate(const std::string& authorization) const {
  constexpr absl::string_view kBearer = "Bearer ";
  if (!operator_key_.empty() && absl::StartsWith(authorization, kBearer)) {
    const std::string key = authorization.substr(kBearer.size());
    if (key.size() == operator_key_.size() &&
        CRYPTO_memcmp(key.data(), operator_key_.data(), key.size()) == 0) {
      return Viewer{Role::kOperator, ""};
    }
  }
  absl::StatusOr<std::string> client = auth_->ClientFor(authorization);
  if (client.ok()) return Viewer{Role::kClient, *client};
  if (!authorization.empty()) {
    absl::StatusOr<std::string> provider = auth_->ProviderFor(authorization);
    if (provider.ok()) return Viewer{Role::kProvider, *provider};
  }
  return client.status();
}

std::string ConsoleApi::Encode(const Viewer& viewer) {
  switch (viewer.role) {
    case Role::kOperator: return "operator:";
    case Role::kProvider: return "provider:" + viewer.name;
    case Role::kClient: break;
  }
  return "client:" + viewer.name;
}

ConsoleApi::Viewer ConsoleApi::Decode(const std::string& encoded) {
  const size_t colon = encoded.find(':');
  const std::string role = encoded.substr(0, colon);
  const std::string name = colon == std::string::npos ? "" : encoded.substr(colon + 1);
  if (role == "operator") return {Role::kOperator, ""};
  if (role == "provider") return {Role::kProvider, name};
  return {Role::kClient, name};
}

json ConsoleApi::WhoAmI(const Viewer& viewer) const {
  const char* role = viewer.role == Role::kOperator   ? "operator"
                     : viewer.role == Role::kProvider ? "provider"
                                                      : "client";
  return json{{"role", role}, {"name", viewer.name}, {"ledger", ledger_ != nullptr}};
}

json ConsoleApi::Mesh(const Viewer&) const {
  json devices = json::array();
  for (const v1::DeviceInfo& d : registry_->Snapshot()) {
    json j = Proto(d);
    j.erase("address");  // where a device listens is the operator's business, not the page's
    devices.push_back(std::move(j));
  }
  return json{{"devices", std::move(devices)}, {"nowMs", absl::ToUnixMillis(absl::Now())}};
}

absl::StatusOr<json> ConsoleApi::Requests(const Viewer& viewer) const {
  LOOM_RETURN_IF_ERROR(NotForProviders(viewer));
  json out = json::array();
  if (recent_ != nullptr) {
    for (const RequestLog::Entry& e : recent_->List(ClientFilter(viewer), 100)) {
      out.push_back(Summary(e));
    }
  }
  return json{{"requests", std::move(out)}};
}

absl::StatusOr<json> ConsoleApi::Request(const Viewer& viewer, const std::string& id) const {
  LOOM_RETURN_IF_ERROR(NotForProviders(viewer));
  std::optional<RequestLog::Entry> e =
      recent_ ? recent_->Get(id, ClientFilter(viewer)) : std::nullopt;
  if (!e) return absl::NotFoundError(absl::StrCat("no recent request '", id, "'"));
  json j = Summary(*e);
  j["response"] = Proto(e->response);
  json events = json::array();
  for (const v1::SubTaskEvent& ev : e->events) events.push_back(Proto(ev));
  j["events"] = std::move(events);
  return j;
}

absl::StatusOr<json> ConsoleApi::Explain(const Viewer& viewer, const std::string& body) const {
  LOOM_RETURN_IF_ERROR(NotForProviders(viewer));
  const json in = json::parse(body, nullptr, false);
  if (in.is_discarded() || !in.is_object() || !in.contains("prompt") || !in["prompt"].is_string() ||
      in["prompt"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("send {\"prompt\": \"...\"} (a non-empty string)");
  }
  v1::CompleteRequest request;
  v1::ChatMessage* m = request.add_messages();
  m->set_role("user");
  m->set_content(in["prompt"].get<std::string>());
  const std::string mode = in.value("mode", "auto");
  if (mode == "compiled") {
    request.set_mode(v1::PLAN_KIND_COMPILED);
  } else if (mode == "compete") {
    request.set_mode(v1::PLAN_KIND_COMPETE);
  } else if (mode == "passthrough") {
    request.set_mode(v1::PLAN_KIND_PASSTHROUGH);
  } else if (mode != "auto") {
    return absl::InvalidArgumentError("mode must be auto, passthrough, compiled or compete");
  }
  if (viewer.role == Role::kClient) request.set_client_id(viewer.name);
  LOOM_ASSIGN_OR_RETURN(v1::CompilationPlan plan, runner_->Explain(request));
  return json{{"plan", Proto(plan)}};
}

absl::StatusOr<json> ConsoleApi::Money(const Viewer& viewer) const {
  if (ledger_ == nullptr) return absl::UnavailableError("this coordinator has no ledger to show");
  if (viewer.role == Role::kClient) {
    const std::string account = ClientAccount(viewer.name);
    LOOM_ASSIGN_OR_RETURN(int64_t balance, ledger_->Balance(account));
    LOOM_ASSIGN_OR_RETURN(int64_t available, ledger_->Available(account));
    return json{{"account", account}, {"balanceMicro", balance}, {"availableMicro", available}};
  }
  PayoutFilter filter;
  if (viewer.role == Role::kProvider) filter.provider_id = viewer.name;
  LOOM_ASSIGN_OR_RETURN(std::vector<PayoutRow> rows, ledger_->Payouts(filter));
  json payouts = json::array();
  for (const PayoutRow& p : rows) {
    payouts.push_back({{"provider", p.provider_id},
                       {"earnedMicro", p.earned_micro},
                       {"tokens", p.tokens},
                       {"requests", p.requests},
                       {"devices", p.devices},
                       {"paidOutMicro", p.paid_out_micro},
                       {"unpaidMicro", p.unpaid_micro}});
  }
  json out{{"payouts", std::move(payouts)}};
  if (viewer.role == Role::kOperator) {
    LOOM_ASSIGN_OR_RETURN(std::vector<AccountInfo> accounts, ledger_->Accounts());
    json list = json::array();
    for (const AccountInfo& a : accounts) {
      list.push_back({{"id", a.id},
                      {"kind", a.kind},
                      {"balanceMicro", a.balance_micro},
                      {"reservedMicro", a.reserved_micro}});
    }
    out["accounts"] = std::move(list);
    LOOM_ASSIGN_OR_RETURN(std::vector<v1::ContributionRecord> records,
                          ledger_->ListRecords({.limit = 25}));
    json recent = json::array();
    for (const v1::ContributionRecord& r : records) recent.push_back(Proto(r));
    out["recentRecords"] = std::move(recent);
    LOOM_ASSIGN_OR_RETURN(std::vector<TransactionInfo> transactions, ledger_->RecentTransactions(25));
    json txns = json::array();
    for (const TransactionInfo& t : transactions) {
      txns.push_back({{"id", t.id},
                      {"kind", t.kind},
                      {"reference", t.reference},
                      {"amountMicro", t.amount_micro},
                      {"createdMs", t.created_ms}});
    }
    out["recentTransactions"] = std::move(txns);
  }
  return out;
}

absl::StatusOr<std::string> ConsoleApi::PayoutsCsv(const Viewer& viewer) const {
  if (viewer.role == Role::kClient) {
    return absl::PermissionDeniedError("payouts are for the operator and providers");
  }
  if (ledger_ == nullptr) return absl::UnavailableError("this coordinator has no ledger to show");
  PayoutFilter filter;
  if (viewer.role == Role::kProvider) filter.provider_id = viewer.name;
  LOOM_ASSIGN_OR_RETURN(std::vector<PayoutRow> rows, ledger_->Payouts(filter));
  std::string csv = "provider,earned_credits,tokens,requests,devices,paid_out_credits,unpaid_credits\n";
  for (const PayoutRow& p : rows) {
    // Provider ids are validated ([A-Za-z0-9._-]), so no field needs quoting.
    absl::StrAppend(&csv, p.provider_id, ",", FormatCredits(p.earned_micro), ",", p.tokens, ",",
                    p.requests, ",", p.devices, ",", FormatCredits(p.paid_out_micro), ",",
                    FormatCredits(p.unpaid_micro), "\n");
  }
  return csv;
}

absl::StatusOr<json> ConsoleApi::Verify(const Viewer& viewer) const {
  if (viewer.role != Role::kOperator) return absl::PermissionDeniedError("verify is the operator's");
  if (ledger_ == nullptr) return absl::UnavailableError("this coordinator has no ledger to show");
  LOOM_ASSIGN_OR_RETURN(VerifyReport report, ledger_->Verify());
  return json{{"ok", report.ok},
              {"transactions", report.transactions},
              {"firstBadTransaction", report.first_bad_transaction},
              {"problem", report.problem}};
}

json ConsoleApi::AffinityRows(const v1::ListAffinitiesResponse& affinities) {
  json rows = json::array();
  for (const v1::Affinity& a : affinities.affinities()) {
    rows.push_back({{"model", a.model()},
                    {"family", a.family()},
                    {"category", CategoryName(a.category())},
                    {"prior", a.prior()},
                    {"good", a.good()},
                    {"bad", a.bad()},
                    {"blended", a.blended()}});
  }
  return rows;
}

json ConsoleApi::Affinities(const Viewer&) const {
  json categories = json::array();
  for (v1::TaskCategory c : kAllCategories) categories.push_back(CategoryName(c));
  return json{{"affinities", AffinityRows(runner_->Affinities())},
              {"categories", std::move(categories)}};
}

}  // namespace loom

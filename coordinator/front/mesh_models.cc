// File: coordinator/front/mesh_models.cc
// What the mesh serves, as the OpenAI surface sees it: the model list (GET /v1/models and
// /v1/models/{id}: named policies, then every model a healthy device serves, with its family,
// devices and capabilities) and, under --drop_params, the structure no model honours.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/openai_wire.h"
#include "coordinator/front/http_front_door.h"
#include "coordinator/front/openai_codec.h"
#include "nlohmann/json.hpp"

namespace loom {

using http_codec::ErrorResponse;
using http_codec::JsonResponse;
using json = nlohmann::json;

HttpResponse HttpFrontDoor::Models(HttpExchange& exchange) {
  std::map<std::string, std::set<std::string>> models;  // name -> devices
  std::map<std::string, std::string> family;
  std::map<std::string, std::set<std::string>> capabilities;
  for (const auto& d : registry_->Snapshot()) {
    if (d.state() != v1::DEVICE_STATE_HEALTHY) continue;
    for (const auto& m : d.models()) {
      models[m.name()].insert(d.device_id());
      family[m.name()] = m.family();
      capabilities[m.name()].insert(m.capabilities().begin(), m.capabilities().end());
    }
  }
  std::vector<json> data;
  // Named policies are model names too: the analyzer decides the plan, the policy the devices.
  for (const auto& [name, policy] : runner_->policies().named()) {
    data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "loom"},
                    {"loom", {{"kind", "policy"},
                              {"description", absl::StrCat("the analyzer decides: passthrough, "
                                                           "compiled or compete; devices: ",
                                                           PolicyBook::Describe(policy))}}}});
  }
  for (const auto& [name, devices] : models) {
    const std::set<std::string>& caps = capabilities[name];
    data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "loom-mesh"},
                    {"loom", {{"family", family[name]}, {"devices", devices.size()},
                              {"kind", caps.count(kCapabilityEmbeddings) ? "embeddings" : "chat"},
                              {"capabilities", std::vector<std::string>(caps.begin(), caps.end())}}}});
  }
  const std::string& wanted = exchange.request().suffix;
  if (wanted.empty()) return JsonResponse(json{{"object", "list"}, {"data", data}});
  for (const json& m : data) {
    if (m["id"] == wanted) return JsonResponse(m);
  }
  return ErrorResponse(404, absl::StrCat("the model '", wanted, "' is not served on this mesh now"));
}

void HttpFrontDoor::DropUnservedStructure(v1::CompleteRequest* request,
                                          std::vector<std::string>* dropped) const {
  std::set<std::string> served;
  for (const auto& d : registry_->Snapshot()) {
    for (const auto& m : d.models()) served.insert(m.capabilities().begin(), m.capabilities().end());
  }
  v1::Structure* s = request->mutable_structure();
  if (!served.count(kCapabilityTools) && !s->tools_json().empty()) {
    s->clear_tools_json();
    s->clear_tool_choice_json();
    s->clear_parallel_tool_calls();
    dropped->push_back("tools");
  }
  if (!served.count(kCapabilityJsonSchema) && !s->response_format_json().empty()) {
    s->clear_response_format_json();
    dropped->push_back("response_format");
  }
}

}  // namespace loom

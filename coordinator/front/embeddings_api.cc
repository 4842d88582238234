// File: coordinator/front/embeddings_api.cc
#include "coordinator/front/embeddings_api.h"

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace loom {

using json = nlohmann::json;

absl::Status ParseEmbeddingsRequest(const std::string& body, EmbeddingsCall* out) {
  json request = json::parse(body, nullptr, false);
  if (request.is_discarded() || !request.is_object()) {
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  if (!request.contains("model") || !request["model"].is_string() ||
      request["model"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("'model' is required: the embedding model to use (GET /v1/models lists them)");
  }
  out->model = request["model"].get<std::string>();
  if (!request.contains("input")) return absl::InvalidArgumentError("'input' is required");
  const json& input = request["input"];
  auto add = [&](const json& item, const std::string& field) -> absl::Status {
    if (item.is_number_integer() || item.is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", field, "': token-id input is not supported here; send the text"));
    }
    if (!item.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("'", field, "' must be a string"));
    }
    const std::string text = item.get<std::string>();
    if (text.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("'", field, "' must not be empty"));
    }
    if (!IsValidUtf8(text)) {
      return absl::InvalidArgumentError(absl::StrCat("'", field, "' is not valid UTF-8"));
    }
    out->input.push_back(text);
    return absl::OkStatus();
  };
  if (input.is_array()) {
    if (input.empty()) return absl::InvalidArgumentError("'input' must not be an empty array");
    if (input.size() > static_cast<size_t>(kMaxEmbeddingInputs)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'input' has ", input.size(), " items; at most ", kMaxEmbeddingInputs));
    }
    // An array of integers is one token-id input.
    if (input[0].is_number_integer()) return add(input[0], "input");
    for (size_t i = 0; i < input.size(); ++i) {
      if (absl::Status s = add(input[i], absl::StrCat("input[", i, "]")); !s.ok()) return s;
    }
  } else {
    if (absl::Status s = add(input, "input"); !s.ok()) return s;
  }
  if (request.contains("encoding_format") && !request["encoding_format"].is_null()) {
    const json& f = request["encoding_format"];
    if (!f.is_string() || (f != "float" && f != "base64")) {
      return absl::InvalidArgumentError("'encoding_format' must be \"float\" or \"base64\"");
    }
    out->base64 = f == "base64";
  }
  if (request.contains("dimensions") && !request["dimensions"].is_null()) {
    const json& d = request["dimensions"];
    if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > kMaxEmbeddingDimensions) {
      return absl::InvalidArgumentError(
          absl::StrCat("'dimensions' must be an integer from 1 to ", kMaxEmbeddingDimensions));
    }
    out->dimensions = d.get<int>();
  }
  if (request.contains("user") && !request["user"].is_null() && !request["user"].is_string()) {
    return absl::InvalidArgumentError("'user' must be a string");
  }
  return absl::OkStatus();
}

std::string Base64Floats(const google::protobuf::RepeatedField<float>& values) {
  std::string bytes(values.size() * 4, '\0');
  for (int i = 0; i < values.size(); ++i) {
    uint32_t bits;
    const float v = values.Get(i);
    std::memcpy(&bits, &v, sizeof bits);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<char>((bits >> (8 * b)) & 0xFF);
  }
  return absl::Base64Escape(bytes);
}

json EmbeddingsJson(const EmbeddingsCall& call, const v1::EmbedResponse& response,
                    int64_t tokens) {
  json data = json::array();
  for (int i = 0; i < response.data_size(); ++i) {
    json item = {{"object", "embedding"}, {"index", i}};
    if (call.base64) {
      item["embedding"] = Base64Floats(response.data(i).values());
    } else {
      const auto& values = response.data(i).values();
      item["embedding"] = std::vector<float>(values.begin(), values.end());
    }
    data.push_back(std::move(item));
  }
  return json{{"object", "list"},
              {"data", std::move(data)},
              {"model", call.model},
              {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
}

}  // namespace loom

// File: coordinator/analyzer/category_model.cc
#include "coordinator/analyzer/category_model.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/categories.h"
#include "coordinator/analyzer/text_features.h"
#include "coordinator/analyzer/lexicon.h"

namespace loom {
namespace {

constexpr char kMagic[8] = {'L', 'O', 'O', 'M', 'C', 'A', 'T', '1'};
constexpr uint32_t kFormat = 1;
constexpr size_t kHeader = 8 + 4 * 4 + 4 + 4 * kModelClasses + 4 * kModelClasses * kModelClasses;

template <typename T>
T Read(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
void Append(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof v);
}

}  // namespace

v1::TaskCategory CategoryProbs::best() const {
  int b = 0;
  for (int i = 1; i < kModelClasses; ++i) {
    if (p[i] > p[b]) b = i;
  }
  return kAllCategories[b];
}

v1::TaskCategory CategoryProbs::second() const {
  const v1::TaskCategory first = best();
  int b = -1;
  for (int i = 0; i < kModelClasses; ++i) {
    if (kAllCategories[i] == first) continue;
    if (b < 0 || p[i] > p[b]) b = i;
  }
  return kAllCategories[b];
}

float CategoryProbs::of(v1::TaskCategory c) const {
  for (int i = 0; i < kModelClasses; ++i) {
    if (kAllCategories[i] == c) return p[i];
  }
  return 0;
}

float CategoryProbs::best_p() const { return of(best()); }
float CategoryProbs::second_p() const { return of(second()); }

float CategoryProbs::entropy() const {
  float h = 0;
  for (float x : p) {
    if (x > 0) h -= x * std::log2(x);
  }
  return h;
}

void Softmax(std::array<float, kModelClasses>* z) {
  float m = (*z)[0];
  for (float v : *z) m = std::max(m, v);
  float sum = 0;
  for (float& v : *z) sum += (v = std::exp(v - m));
  for (float& v : *z) v /= sum;
}

absl::StatusOr<std::unique_ptr<CategoryModel>> CategoryModel::FromBytes(absl::string_view bytes) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the model file is little-endian");
  if (bytes.size() < kHeader + 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("category model: ", bytes.size(), " bytes is too short to be a model"));
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return absl::InvalidArgumentError("category model: not a Loom category model (bad magic)");
  }
  const char* p = bytes.data() + 8;
  const uint32_t format = Read<uint32_t>(p), features = Read<uint32_t>(p + 4),
                 bits = Read<uint32_t>(p + 8), classes = Read<uint32_t>(p + 12);
  if (format != kFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat("category model: format ", format, ", this build reads ", kFormat));
  }
  if (features != kFeatureVersion) {
    return absl::InvalidArgumentError(absl::StrCat("category model: trained on feature version ",
                                                   features, ", this build extracts version ",
                                                   kFeatureVersion, "; retrain it"));
  }
  if (classes != kModelClasses || bits < 8 || bits > 24) {
    return absl::InvalidArgumentError(
        absl::StrCat("category model: ", classes, " classes and ", bits, " hash bits are not valid"));
  }
  const size_t rows = size_t{1} << bits;
  const size_t want = kHeader + rows * kModelClasses + 8;
  if (bytes.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat("category model: ", bytes.size(),
                                                   " bytes, expected ", want, " (truncated?)"));
  }
  const uint64_t sum = Read<uint64_t>(bytes.data() + want - 8);
  if (Fnv1a64(bytes.substr(0, want - 8)) != sum) {
    return absl::InvalidArgumentError("category model: checksum mismatch (the file is corrupt)");
  }
  auto model = std::unique_ptr<CategoryModel>(new CategoryModel());
  model->hash_bits_ = static_cast<int>(bits);
  model->scale_ = Read<float>(p + 16);
  for (int c = 0; c < kModelClasses; ++c) model->bias_[c] = Read<float>(p + 20 + 4 * c);
  for (size_t k = 0; k < model->lexicon_.size(); ++k) {
    model->lexicon_[k] = Read<float>(p + 20 + 4 * kModelClasses + 4 * k);
    if (!std::isfinite(model->lexicon_[k])) {
      return absl::InvalidArgumentError("category model: a lexicon weight is not a number");
    }
  }
  if (!std::isfinite(model->scale_) || model->scale_ <= 0) {
    return absl::InvalidArgumentError("category model: weight scale is not a positive number");
  }
  model->weights_.resize(rows * kModelClasses);
  std::memcpy(model->weights_.data(), bytes.data() + kHeader, model->weights_.size());
  return model;
}

absl::StatusOr<std::unique_ptr<CategoryModel>> CategoryModel::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("category model: cannot open ", path));
  std::stringstream buf;
  buf << in.rdbuf();
  auto model = FromBytes(buf.str());
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(path, ": ", model.status().message()));
  }
  return model;
}

std::string CategoryModel::Encode(int hash_bits, const std::array<float, kModelClasses>& bias,
                                  const std::vector<float>& lexicon,
                                  const std::vector<float>& weights) {
  float max_abs = 1e-6f;
  for (float w : weights) max_abs = std::max(max_abs, std::fabs(w));
  const float scale = max_abs / 127.0f;
  std::string out(kMagic, sizeof kMagic);
  Append<uint32_t>(&out, kFormat);
  Append<uint32_t>(&out, kFeatureVersion);
  Append<uint32_t>(&out, static_cast<uint32_t>(hash_bits));
  Append<uint32_t>(&out, kModelClasses);
  Append<float>(&out, scale);
  for (float b : bias) Append<float>(&out, b);
  for (float l : lexicon) Append<float>(&out, l);
  for (float w : weights) {
    Append<int8_t>(&out, static_cast<int8_t>(std::lround(std::clamp(w / scale, -127.0f, 127.0f))));
  }
  Append<uint64_t>(&out, Fnv1a64(out));
  return out;
}

CategoryProbs CategoryModel::PredictFeatures(const std::vector<uint32_t>& ids,
                                             const std::array<float, kModelClasses>& lexicon) const {
  std::array<int32_t, kModelClasses> acc{};
  for (uint32_t id : ids) {
    const int8_t* row = &weights_[static_cast<size_t>(id) * kModelClasses];
    for (int c = 0; c < kModelClasses; ++c) acc[c] += row[c];
  }
  const float value = ids.empty() ? 0 : scale_ / std::sqrt(static_cast<float>(ids.size()));
  CategoryProbs out;
  for (int c = 0; c < kModelClasses; ++c) out.p[c] = bias_[c] + value * acc[c];
  for (int f = 0; f < kModelClasses; ++f) {
    if (lexicon[f] == 0) continue;
    for (int c = 0; c < kModelClasses; ++c) out.p[c] += lexicon[f] * lexicon_[f * kModelClasses + c];
  }
  Softmax(&out.p);
  return out;
}

CategoryProbs CategoryModel::Predict(absl::string_view text) const {
  return Predict(text, lexicon::Score(std::string(text)));
}

CategoryProbs CategoryModel::Predict(absl::string_view text,
                                     const std::array<double, 9>& lexicon_scores) const {
  thread_local std::vector<uint32_t> ids;
  ExtractFeatures(text, hash_bits_, &ids);
  return PredictFeatures(ids, LexiconFeatures(lexicon_scores));
}

std::array<float, kModelClasses> LexiconFeatures(absl::string_view text) {
  return LexiconFeatures(lexicon::Score(std::string(text)));
}

std::array<float, kModelClasses> LexiconFeatures(const std::array<double, 9>& s) {
  std::array<float, kModelClasses> out;
  for (int c = 0; c < kModelClasses; ++c) out[c] = std::log1p(std::max(0.0, s[kAllCategories[c]]));
  return out;
}

}  // namespace loom

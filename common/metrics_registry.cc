// File: common/metrics_registry.cc
#include "common/metrics_registry.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace loom {
namespace {

// {a="x",b="y"} with `extra` (already formatted, e.g. le="0.5") last; "" for no labels.
std::string LabelSet(const MetricsRegistry::Labels& names, const MetricsRegistry::Labels& values,
                     const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    absl::StrAppend(&out, out.empty() ? "" : ",", names[i], "=\"", EscapeLabelValue(values[i]),
                    "\"");
  }
  if (!extra.empty()) absl::StrAppend(&out, out.empty() ? "" : ",", extra);
  return out.empty() ? "" : absl::StrCat("{", out, "}");
}

void Header(std::string* out, const std::string& name, const std::string& help,
            const char* type) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

// A sample value: integers without a fraction, others in the fewest digits that read back
// as the same double.
std::string Value(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v)) && v < 9e15 && v > -9e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  for (int digits = 6; digits < 17; ++digits) {
    const std::string text = absl::StrFormat("%.*g", digits, v);
    if (std::strtod(text.c_str(), nullptr) == v) return text;
  }
  return absl::StrFormat("%.17g", v);
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

MetricsRegistry::Counter::Counter(std::string name, std::string help, Labels label_names,
                                  size_t max_series)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      max_series_(std::max<size_t>(1, max_series)) {}

void MetricsRegistry::Counter::Add(const Labels& labels, int64_t n) {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(labels);
  if (it == series_.end()) {
    if (series_.size() >= max_series_) {
      it = series_.emplace(Labels(label_names_.size(), "(other)"), 0).first;
    } else {
      it = series_.emplace(labels, 0).first;
    }
  }
  it->second += n;
}

void MetricsRegistry::Counter::Render(std::string* out) const {
  Header(out, name_, help_, "counter");
  absl::MutexLock lock(&mu_);
  if (series_.empty() && label_names_.empty()) absl::StrAppend(out, name_, " 0\n");
  for (const auto& [labels, n] : series_) {
    absl::StrAppend(out, name_, LabelSet(label_names_, labels), " ", n, "\n");
  }
}

MetricsRegistry::Histogram::Histogram(std::string name, std::string help,
                                      std::vector<double> bounds, Labels label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      bounds_([&] {
        std::sort(bounds.begin(), bounds.end());
        return std::move(bounds);
      }()),
      label_names_(std::move(label_names)) {}

void MetricsRegistry::Histogram::Observe(const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  Series& s = series_[labels];
  if (s.counts.size() != bounds_.size()) s.counts.assign(bounds_.size(), 0);
  const auto at = std::lower_bound(bounds_.begin(), bounds_.end(), value);  // first bound >= v
  if (at != bounds_.end()) ++s.counts[at - bounds_.begin()];
  ++s.count;
  s.sum += value;
}

void MetricsRegistry::Histogram::Render(std::string* out) const {
  Header(out, name_, help_, "histogram");
  absl::MutexLock lock(&mu_);
  auto one = [&](const Labels& labels, const Series& s) {
    int64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += i < s.counts.size() ? s.counts[i] : 0;
      absl::StrAppend(out, name_, "_bucket",
                      LabelSet(label_names_, labels, absl::StrFormat("le=\"%g\"", bounds_[i])),
                      " ", cumulative, "\n");
    }
    absl::StrAppend(out, name_, "_bucket", LabelSet(label_names_, labels, "le=\"+Inf\""), " ",
                    s.count, "\n");
    absl::StrAppend(out, name_, "_sum", LabelSet(label_names_, labels),
                    absl::StrFormat(" %.9f\n", s.sum));
    absl::StrAppend(out, name_, "_count", LabelSet(label_names_, labels), " ", s.count, "\n");
  };
  if (series_.empty() && label_names_.empty()) one({}, Series{});
  for (const auto& [labels, s] : series_) one(labels, s);
}

MetricsRegistry::Counter* MetricsRegistry::AddCounter(std::string name, std::string help,
                                                      Labels label_names, size_t max_series) {
  auto* c = new Counter(std::move(name), std::move(help), std::move(label_names), max_series);
  absl::MutexLock lock(&mu_);
  families_.emplace_back(c);
  return c;
}

MetricsRegistry::Histogram* MetricsRegistry::AddHistogram(std::string name, std::string help,
                                                          std::vector<double> bounds,
                                                          Labels label_names) {
  auto* h = new Histogram(std::move(name), std::move(help), std::move(bounds),
                          std::move(label_names));
  absl::MutexLock lock(&mu_);
  families_.emplace_back(h);
  return h;
}

std::string MetricsRegistry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) f->Render(&out);
  return out;
}

void GaugeWriter::Family(absl::string_view name, absl::string_view help, absl::string_view type) {
  absl::StrAppend(out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void GaugeWriter::Sample(absl::string_view name,
                         const std::vector<std::pair<std::string, std::string>>& labels,
                         double value) {
  std::string set;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&set, set.empty() ? "" : ",", k, "=\"", EscapeLabelValue(v), "\"");
  }
  absl::StrAppend(out_, name, set.empty() ? "" : absl::StrCat("{", set, "}"), " ", Value(value),
                  "\n");
}

}  // namespace loom

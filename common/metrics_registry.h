// File: common/metrics_registry.h
// A small Prometheus registry: counter and histogram families with labels, rendered in the text
// exposition format (0.0.4), label values escaped. A new metric is one line where its owner
// declares it, and one call where it happens:
//
//   MetricsRegistry registry;
//   MetricsRegistry::Counter* const requests =
//       registry.AddCounter("loom_requests_total", "Requests by outcome.", {"outcome"});
//   requests->Add({"ok"});
//   std::string text = registry.Render();
//
// Values known only at scrape time (gauges read from elsewhere) are written after Render with
// a GaugeWriter, in the same format.
//
// Families are added before the registry is used and live as long as it; Add, Observe and
// Render are thread-safe (a mutex per family).
#ifndef LOOM_COMMON_METRICS_REGISTRY_H_
#define LOOM_COMMON_METRICS_REGISTRY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace loom {

// A label value as the exposition format wants it: backslash, double quote and newline escaped.
std::string EscapeLabelValue(absl::string_view value);

class MetricsRegistry {
 public:
  using Labels = std::vector<std::string>;  // values, in the family's label order

  class Family {
   public:
    virtual ~Family() = default;
    virtual void Render(std::string* out) const = 0;
  };

  class Counter : public Family {
   public:
    // Adds `n` to the series `labels` (created at 0 on first use). Past `max_series` series,
    // new label sets count under "(other)" in every label, so clients cannot grow the set.
    void Add(const Labels& labels, int64_t n = 1);
    void Add(int64_t n = 1) { Add(Labels{}, n); }
    // Creates the series (rendered as 0 until counted).
    void Touch(const Labels& labels) { Add(labels, 0); }
    void Render(std::string* out) const override;

   private:
    friend class MetricsRegistry;
    Counter(std::string name, std::string help, Labels label_names, size_t max_series);
    const std::string name_, help_;
    const Labels label_names_;
    const size_t max_series_;
    mutable absl::Mutex mu_;
    std::map<Labels, int64_t> series_ ABSL_GUARDED_BY(mu_);
  };

  class Histogram : public Family {
   public:
    void Observe(const Labels& labels, double value);
    void Observe(double value) { Observe(Labels{}, value); }
    void Render(std::string* out) const override;

   private:
    friend class MetricsRegistry;
    Histogram(std::string name, std::string help, std::vector<double> bounds, Labels label_names);
    struct Series {
      std::vector<int64_t> counts;  // per bound, not cumulative
      int64_t count = 0;
      double sum = 0;
    };
    const std::string name_, help_;
    const std::vector<double> bounds_;  // ascending
    const Labels label_names_;
    mutable absl::Mutex mu_;
    std::map<Labels, Series> series_ ABSL_GUARDED_BY(mu_);
  };

  // The family is the registry's; its pointer stays valid as long as the registry.
  Counter* AddCounter(std::string name, std::string help, Labels label_names = {},
                      size_t max_series = 1024);
  Histogram* AddHistogram(std::string name, std::string help, std::vector<double> bounds,
                          Labels label_names = {});

  // Every family, in the order they were added; series in label order.
  std::string Render() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ ABSL_GUARDED_BY(mu_);
};

// Writes samples computed at scrape time (gauges, or counters kept elsewhere) in the exposition
// format, escaping label values.
class GaugeWriter {
 public:
  explicit GaugeWriter(std::string* out) : out_(out) {}
  // The HELP and TYPE lines of a family; its samples follow.
  void Family(absl::string_view name, absl::string_view help, absl::string_view type = "gauge");
  void Sample(absl::string_view name, const std::vector<std::pair<std::string, std::string>>& labels,
              double value);

 private:
  std::string* const out_;
};

}  // namespace loom

#endif  // LOOM_COMMON_METRICS_REGISTRY_H_

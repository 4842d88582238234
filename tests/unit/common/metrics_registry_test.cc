#include "common/metrics_registry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsRegistryTest, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue(R"(a"b\c)"), R"(a\"b\\c)");
  EXPECT_EQ(EscapeLabelValue("two\nlines"), "two\\nlines");
  MetricsRegistry r;
  r.AddCounter("x_total", "X.", {"model"})->Add({"evil\"} 1\nfake_metric 9"});
  const std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("x_total{model=\"evil\\\"} 1\\nfake_metric 9\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("\nfake_metric 9")));  // no sample smuggled in
}

TEST(MetricsRegistryTest, CountersRenderWithHelpTypeAndSortedSeries) {
  MetricsRegistry r;
  MetricsRegistry::Counter* plain = r.AddCounter("a_total", "Plain.");
  MetricsRegistry::Counter* by = r.AddCounter("b_total", "By outcome.", {"outcome"});
  by->Add({"ok"}, 2);
  by->Add({"failed"});
  by->Touch({"cancelled"});
  EXPECT_EQ(r.Render(),
            "# HELP a_total Plain.\n# TYPE a_total counter\na_total 0\n"
            "# HELP b_total By outcome.\n# TYPE b_total counter\n"
            "b_total{outcome=\"cancelled\"} 0\nb_total{outcome=\"failed\"} 1\n"
            "b_total{outcome=\"ok\"} 2\n");
  plain->Add(5);
  EXPECT_THAT(r.Render(), HasSubstr("a_total 5\n"));
}

TEST(MetricsRegistryTest, PastItsSeriesLimitACounterCountsUnderOther) {
  MetricsRegistry r;
  MetricsRegistry::Counter* c = r.AddCounter("m_total", "M.", {"model"}, /*max_series=*/2);
  c->Add({"a"});
  c->Add({"b"});
  c->Add({"c"});
  c->Add({"d"});
  c->Add({"a"});
  const std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("m_total{model=\"a\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("m_total{model=\"(other)\"} 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("model=\"c\"")));
}

TEST(MetricsRegistryTest, HistogramsAreCumulativeWithSumAndCount) {
  MetricsRegistry r;
  MetricsRegistry::Histogram* h = r.AddHistogram("d_seconds", "D.", {0.1, 1}, {"kind"});
  h->Observe({"x"}, 0.05);
  h->Observe({"x"}, 0.1);  // on a bound: counted in it
  h->Observe({"x"}, 5);
  EXPECT_EQ(r.Render(),
            "# HELP d_seconds D.\n# TYPE d_seconds histogram\n"
            "d_seconds_bucket{kind=\"x\",le=\"0.1\"} 2\n"
            "d_seconds_bucket{kind=\"x\",le=\"1\"} 2\n"
            "d_seconds_bucket{kind=\"x\",le=\"+Inf\"} 3\n"
            "d_seconds_sum{kind=\"x\"} 5.150000000\n"
            "d_seconds_count{kind=\"x\"} 3\n");
  MetricsRegistry empty;
  empty.AddHistogram("e_seconds", "E.", {1});
  EXPECT_THAT(empty.Render(), HasSubstr("e_seconds_bucket{le=\"+Inf\"} 0\ne_seconds_sum 0.000000000\n"
                                        "e_seconds_count 0\n"));
}

TEST(MetricsRegistryTest, GaugesWrittenAtScrapeTime) {
  std::string out;
  GaugeWriter g(&out);
  g.Family("loom_affinity", "A.");
  g.Sample("loom_affinity", {{"model", "m\"1"}, {"category", "code"}}, 0.7);
  g.Sample("loom_affinity", {}, 3);
  EXPECT_EQ(out,
            "# HELP loom_affinity A.\n# TYPE loom_affinity gauge\n"
            "loom_affinity{model=\"m\\\"1\",category=\"code\"} 0.7\nloom_affinity 3\n");
}

}  // namespace
}  // namespace loom

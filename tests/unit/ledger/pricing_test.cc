// Pricing and the money format: integer micro-credits, rounded down, printed exactly.
#include "ledger/pricing.h"

#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace loom {
namespace {

v1::ModelInfo Sized(double parameters_b) {
  v1::ModelInfo m;
  m.set_parameters_b(parameters_b);
  return m;
}

TEST(PricingTest, DefaultPriceFollowsSizeWithAFloor) {
  EXPECT_EQ(PricePer1kMicro(Sized(7)), 7000);
  EXPECT_EQ(PricePer1kMicro(Sized(70)), 70000);
  EXPECT_EQ(PricePer1kMicro(Sized(0.1)), 500);  // the floor
  EXPECT_EQ(PricePer1kMicro(Sized(0.5)), 500);
  EXPECT_EQ(PricePer1kMicro(Sized(0.501)), 501);
  EXPECT_EQ(PricePer1kMicro(Sized(-3)), 500);   // a nonsense size is the floor, not negative
  EXPECT_EQ(PricePer1kMicro(Sized(0)), 500);
}

TEST(PricingTest, AFractionOfAMicroCreditInTheSizePriceRoundsUp) {
  // 7.0001 B parameters is 7000.1 micro-credits: the provider is not undercut by a fraction.
  EXPECT_EQ(PricePer1kMicro(Sized(7.0001)), 7001);
}

TEST(PricingTest, AnAdvertisedPriceWinsOverTheSize) {
  v1::ModelInfo m = Sized(70);
  m.set_price_per_1k_micro(42);
  EXPECT_EQ(PricePer1kMicro(m), 42);
  m.set_price_per_1k_micro(0);  // unset: back to the size rule
  EXPECT_EQ(PricePer1kMicro(m), 70000);
}

TEST(PricingTest, CreditsRoundDownToTheMicroCredit) {
  EXPECT_EQ(CreditsForTokens(64, 7000), 448);
  EXPECT_EQ(CreditsForTokens(1000, 1), 1);
  EXPECT_EQ(CreditsForTokens(999, 1), 0);   // 0.999 micro-credits: nothing
  EXPECT_EQ(CreditsForTokens(1, 999), 0);
  EXPECT_EQ(CreditsForTokens(3, 333), 0);   // 0.999
  EXPECT_EQ(CreditsForTokens(7, 1001), 7);  // 7.007
}

TEST(PricingTest, NoTokensOrNoPriceCostNothingAndNeverGoNegative) {
  EXPECT_EQ(CreditsForTokens(0, 7000), 0);
  EXPECT_EQ(CreditsForTokens(-1, 999), 0);
  EXPECT_EQ(CreditsForTokens(100, 0), 0);
  EXPECT_EQ(CreditsForTokens(100, -5), 0);
}

TEST(PricingTest, LargeCountsDoNotOverflow) {
  // The bound the code relies on: both factors below 2^31.
  const int64_t big = std::numeric_limits<int32_t>::max();
  EXPECT_EQ(CreditsForTokens(big, big), big * big / 1000);
}

TEST(PricingTest, RoundingPerRecordNeverChargesMoreThanTheWholeAtOnce) {
  // The client pays the sum of its records' credits; each rounds down, so splitting a
  // request's tokens over records never charges more than pricing them together.
  for (int64_t price : {1, 7, 999, 7000}) {
    for (int64_t a = 0; a < 50; ++a) {
      for (int64_t b = 0; b < 50; b += 7) {
        EXPECT_LE(CreditsForTokens(a, price) + CreditsForTokens(b, price),
                  CreditsForTokens(a + b, price));
      }
    }
  }
}

TEST(MoneyFormatTest, SixDecimalsAlways) {
  EXPECT_EQ(FormatCredits(0), "0.000000");
  EXPECT_EQ(FormatCredits(1), "0.000001");
  EXPECT_EQ(FormatCredits(1234567), "1.234567");
  EXPECT_EQ(FormatCredits(kMicroPerCredit), "1.000000");
  EXPECT_EQ(FormatCredits(-5), "-0.000005");
  EXPECT_EQ(FormatCredits(-kMicroPerCredit - 1), "-1.000001");
}

TEST(MoneyFormatTest, TheExtremesPrintExactly) {
  EXPECT_EQ(FormatCredits(std::numeric_limits<int64_t>::max()), "9223372036854.775807");
  EXPECT_EQ(FormatCredits(std::numeric_limits<int64_t>::min()), "-9223372036854.775808");
}

}  // namespace
}  // namespace loom

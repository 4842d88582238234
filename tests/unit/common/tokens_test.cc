#include "common/tokens.h"

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(TokensTest, CountsWordsAndPunctuation) {
  EXPECT_EQ(CountTokens(""), 0);
  EXPECT_EQ(CountTokens("   \n"), 0);
  EXPECT_EQ(CountTokens("hello world"), 2);
  EXPECT_EQ(CountTokens("hello, world!"), 4);
  EXPECT_EQ(CountTokens("[sim]"), 3);
  EXPECT_EQ(CountTokens("[simulated]"), 4);  // "simulated" is 9 letters: two pieces
}

TEST(TokensTest, SplitsLongWordsLikeSubwordTokenizers) {
  EXPECT_EQ(CountTokens("abcdefgh"), 1);
  EXPECT_EQ(CountTokens("abcdefghi"), 2);
  EXPECT_EQ(CountTokens("internationalization"), 3);  // 20 letters
}

TEST(TokensTest, ChunkedTextCountsTheSameAsWholeWhenChunksStartWithSpace) {
  EXPECT_EQ(CountTokens(" a b c"), CountTokens(" a") + CountTokens(" b") + CountTokens(" c"));
}

TEST(TokensTest, MultiByteTextIsNotOneTokenPerByte) {
  const std::string chinese = "\xe4\xbd\xa0\xe5\xa5\xbd";  // two CJK characters, six bytes
  EXPECT_EQ(CountTokens(chinese), 1);
}

}  // namespace
}  // namespace loom

#include "common/utf8.h"

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(Utf8Test, ValidTextIsRecognisedAndKept) {
  for (const char* text : {"", "plain", "Zürich où déjà", "日本語のテキスト", "emoji 🙂 ok",
                           "\xF4\x8F\xBF\xBF" /* U+10FFFF */}) {
    EXPECT_TRUE(IsValidUtf8(text)) << text;
    EXPECT_EQ(ToValidUtf8(text), text);
  }
}

TEST(Utf8Test, IllFormedSequencesAreReplacedOnePerMaximalSubpart) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_FALSE(IsValidUtf8("caf\xC3"));                  // truncated two-byte character
  EXPECT_EQ(ToValidUtf8("caf\xC3"), "caf" + r);
  EXPECT_EQ(ToValidUtf8("a\xFF" "b"), "a" + r + "b");     // never a UTF-8 byte
  EXPECT_EQ(ToValidUtf8("\xC0\xAF"), r + r);              // overlong '/'
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), r + r + r);      // a surrogate, U+D800
  EXPECT_EQ(ToValidUtf8("\xF4\x90\x80\x80"), r + r + r + r);  // past U+10FFFF
  EXPECT_EQ(ToValidUtf8("\xE2\x82" "x"), r + "x");        // one maximal subpart, then x
  EXPECT_TRUE(IsValidUtf8(ToValidUtf8("\x80\x80\xFE garbage \xC3")));
}

TEST(Utf8Test, TruncationNeverSplitsACharacter) {
  const std::string text = "ab\xC3\xA9" "cd";  // "abécd": é is bytes 2-3
  EXPECT_EQ(TruncateUtf8(text, 3, "..."), "ab...");
  EXPECT_EQ(TruncateUtf8(text, 4, "..."), "ab\xC3\xA9...");
  EXPECT_EQ(TruncateUtf8(text, 100, "..."), text);
  EXPECT_EQ(TruncateUtf8("🙂🙂", 7), "🙂");
  // Every cut of a multi-script string is valid UTF-8.
  const std::string mixed = "Zürich où 日本 🙂 déjà";
  for (size_t n = 0; n <= mixed.size(); ++n) {
    EXPECT_TRUE(IsValidUtf8(TruncateUtf8(mixed, n))) << n;
    EXPECT_LE(Utf8PrefixLength(mixed, n), n);
  }
}

TEST(Utf8Test, CompleteLengthHoldsBackAnUnfinishedCharacter) {
  EXPECT_EQ(CompleteUtf8Length("abc"), 3u);
  EXPECT_EQ(CompleteUtf8Length("ab\xE6\x97"), 2u);        // first two bytes of 日
  EXPECT_EQ(CompleteUtf8Length("ab\xE6\x97\xA5"), 5u);    // all of it
  EXPECT_EQ(CompleteUtf8Length("\xF0\x9F\x99"), 0u);      // three of 🙂's four bytes
  EXPECT_EQ(CompleteUtf8Length(""), 0u);
}

}  // namespace
}  // namespace loom

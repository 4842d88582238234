#include "common/crypto.h"

#include <set>

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(CryptoTest, Sha256MatchesTheStandardVectors) {
  // FIPS 180-2, appendix B.1, and the empty string.
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // Every byte counts, NULs included.
  EXPECT_NE(Sha256Hex(std::string("a\0b", 3)), Sha256Hex("a"));
}

TEST(CryptoTest, HmacMatchesRfc4231) {
  // RFC 4231, test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(CryptoTest, RandomHexHasTheLengthAskedAndRepeatsNothing) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string r = RandomHex(16);
    ASSERT_EQ(r.size(), 32u);
    EXPECT_EQ(r.find_first_not_of("0123456789abcdef"), std::string::npos) << r;
    seen.insert(r);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(RandomHex(0), "");
}

TEST(CryptoTest, HexAndComparison) {
  EXPECT_EQ(HexOf(std::string("\x00\xff\x10", 3)), "00ff10");
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret!"));
}

}  // namespace
}  // namespace loom

// The density check of host-named lesions (pipeline/density.h) on a hand-made abdominal slice:
// liver 60 HU on the image's left, a kidney of 35 HU on its right, soft tissue 40 HU, 0.75 mm pixels.
#include <gtest/gtest.h>

#include <cmath>

#include "pipeline/density.h"

using namespace triage;
using namespace triage::pipeline;

namespace {

constexpr int kSize = 128;

core::Volume abdomen() {
    core::Volume v;
    v.modality = "CT";
    v.columns = v.rows = kSize;
    v.slices = 1;
    v.row_spacing = v.column_spacing = 0.75;
    v.voxels.assign(static_cast<size_t>(kSize) * kSize, 40.0f);
    for (int y = 10; y < 118; ++y)
        for (int x = 0; x < 60; ++x) v.voxels[static_cast<size_t>(y) * kSize + x] = 60;  // liver
    return v;
}

/// Paints a disc of `value` and returns its pixels.
std::vector<size_t> disc(core::Volume& v, int cy, int cx, int r, float value) {
    std::vector<size_t> pixels;
    for (int y = 0; y < kSize; ++y)
        for (int x = 0; x < kSize; ++x)
            if (std::hypot(y - cy, x - cx) <= r) {
                pixels.push_back(static_cast<size_t>(y) * kSize + x);
                v.voxels[pixels.back()] = value;
            }
    return pixels;
}

std::vector<std::uint8_t> map_of(const std::vector<size_t>& pixels) {
    std::vector<std::uint8_t> map(static_cast<size_t>(kSize) * kSize, 0);
    for (size_t i : pixels) map[i] = 255;
    return map;
}

const std::map<std::string, std::string> kOrgans{{"liver tumor", "liver"}, {"kidney tumor", "kidney"}, {"pancreas tumor", "pancreas"}};
// PHANTOMS.md's table, as the demonstration bundle declares it.
const std::map<std::string, DensitySpec> kSpecs{{"liver tumor", {55, 65, {{-50, -20}}, true}},
                                                {"kidney tumor", {30, 40, {{-30, -15}, {40, 80}}, false}},
                                                {"pancreas tumor", {40, 50, {{-30, -15}}, false}}};

}  // namespace

TEST(Density, MeasuresTheCoreAndTheBandAroundIt) {
    core::Volume v = abdomen();
    const auto lesion = disc(v, 64, 30, 8, 20);
    EXPECT_NEAR(core_hu(v, 0, lesion), 20, 0.01);
    const SmoothSlice smooth(v, 0, 3);
    EXPECT_NEAR(smooth.at(64 * kSize + 45), 60, 0.01);  // inside the liver, away from the lesion
    const Band liver = band_around(v, smooth, lesion, 3, 11, 53, 70);
    EXPECT_GT(liver.share, 0.95);
    ASSERT_TRUE(liver.median);
    EXPECT_NEAR(*liver.median, 60, 0.5);
    const Band kidney = band_around(v, smooth, lesion, 3, 11, 27, 43);
    EXPECT_LT(kidney.share, 0.05);
    EXPECT_FALSE(kidney.median);
}

TEST(Density, OrganDensityIgnoresWhereItsMapSpillsOntoAnotherDensity) {
    core::Volume v = abdomen();
    const auto kidney = disc(v, 64, 95, 15, 35);
    auto spill = kidney;  // the map also covers a band of liver
    for (int y = 50; y < 80; ++y)
        for (int x = 40; x < 60; ++x) spill.push_back(static_cast<size_t>(y) * kSize + x);
    const SmoothSlice smooth(v, 0, 3);
    const auto lesion = disc(v, 64, 100, 4, 100);
    auto d = organ_density(v, smooth, 0, map_of(spill), lesion, 4, 22, 48);
    ASSERT_TRUE(d);
    EXPECT_NEAR(*d, 35, 0.01);
    EXPECT_FALSE(organ_density(v, smooth, 0, map_of(lesion), lesion, 4, 22, 48));  // nothing away from the lesion
}

TEST(Density, AKidneyTumourAsDenseAsTheKidneyIsKidney) {
    core::Volume v = abdomen();
    const auto kidney = disc(v, 64, 80, 15, 35);
    const auto pole = disc(v, 64, 67, 6, 35);  // the kidney's pole against the liver, segmented as a lesion
    const auto named = density_naming(v, 0, pole, "kidney tumor", {{"kidney tumor", map_of(kidney)}}, kSpecs, kOrgans, 0.45, 5);
    ASSERT_TRUE(named.reject);
    EXPECT_STREQ(reject_name(named.reject->reason), "isodense");
    EXPECT_EQ(named.reject->why, "+0 HU to the kidney (35 HU): a kidney tumor is -30 to -15 or +40 to +80 HU from it (+-5)");
    EXPECT_EQ(named.evidence, "density: 35 HU, +0 HU to the kidney (35 HU)");
}

TEST(Density, ALesionInLiverDensityTissueAsDarkAsALiverTumourIsOne) {
    core::Volume v = abdomen();
    const auto kidney = disc(v, 64, 95, 15, 35);
    const auto lesion = disc(v, 64, 30, 8, 20);  // in the liver, named kidney tumor (the kidney map spilled over it)
    const auto named = density_naming(v, 0, lesion, "kidney tumor", {{"kidney tumor", map_of(kidney)}}, kSpecs, kOrgans, 0.45, 5);
    EXPECT_FALSE(named.reject);
    EXPECT_EQ(named.label, "liver tumor");
    EXPECT_EQ(named.evidence,
              "density: 20 HU, -15 HU to the kidney (35 HU); liver density (60 HU) over 1.00 of the 2-8 mm around it, -40 HU to it -> liver tumor");
    EXPECT_TRUE(named.by_density);
}

TEST(Density, ALiverTumourTheLiverMapMissesIsConfirmedByTheLiverDensityAroundIt) {
    core::Volume v = abdomen();
    const auto lesion = disc(v, 64, 30, 8, 20);  // in the liver, whose map (a caudal tip, faint) covers none of its ring
    const auto named = density_naming(v, 0, lesion, "liver tumor", {{"liver tumor", map_of({})}}, kSpecs, kOrgans, 0.65, 5);
    EXPECT_FALSE(named.reject);
    EXPECT_EQ(named.label, "liver tumor");
    EXPECT_TRUE(named.by_density);  // host_min_share by the maps does not apply to it
    EXPECT_EQ(named.evidence, "density: 20 HU; liver density (60 HU) over 1.00 of the 2-8 mm around it, -40 HU to it -> liver tumor");
}

TEST(Density, ALiverTumourInTissueOfAnotherDensityIsNotConfirmedByIt) {
    core::Volume v = abdomen();
    disc(v, 64, 95, 15, 35);
    const auto lesion = disc(v, 64, 95, 6, 10);  // in the kidney, named liver tumor
    const auto named = density_naming(v, 0, lesion, "liver tumor", {}, kSpecs, kOrgans, 0.65, 5);
    EXPECT_EQ(named.label, "liver tumor");
    EXPECT_FALSE(named.by_density);
}

TEST(Density, ConfirmingItsOwnNameTakesMoreLiverAroundItThanRenaming) {
    core::Volume v = abdomen();  // liver: x < 60
    const auto lesion = disc(v, 64, 48, 8, 25);  // near the liver's edge: liver density over 0.70 of its annulus
    const auto confirmed = density_naming(v, 0, lesion, "liver tumor", {}, kSpecs, kOrgans, 0.65, 5);
    EXPECT_FALSE(confirmed.by_density);
    const auto renamed = density_naming(v, 0, lesion, "kidney tumor", {}, kSpecs, kOrgans, 0.65, 5);
    EXPECT_EQ(renamed.label, "liver tumor");
    EXPECT_TRUE(renamed.by_density);
}

TEST(Density, AnEnhancingKidneyTumourKeepsItsName) {
    core::Volume v = abdomen();
    const auto kidney = disc(v, 64, 95, 15, 35);
    const auto lesion = disc(v, 64, 95, 6, 100);
    const auto named = density_naming(v, 0, lesion, "kidney tumor", {{"kidney tumor", map_of(kidney)}}, kSpecs, kOrgans, 0.45, 5);
    EXPECT_FALSE(named.reject);
    EXPECT_EQ(named.label, "kidney tumor");
    EXPECT_EQ(named.evidence, "density: 100 HU, +65 HU to the kidney (35 HU)");  // no liver density around it
}

TEST(Density, ABundleWithoutDensitiesChangesNothing) {
    core::Volume v = abdomen();
    const auto lesion = disc(v, 64, 30, 8, 20);
    const auto named = density_naming(v, 0, lesion, "kidney tumor", {}, {}, kOrgans, 0.45, 5);
    EXPECT_EQ(named.label, "kidney tumor");
    EXPECT_TRUE(named.evidence.empty());
    EXPECT_FALSE(named.reject);
}

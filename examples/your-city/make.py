"""Writes the 'your own city' test data: a made-up 4 x 4 street grid in Zhengzhou (about
600 m between intersections, around 113.62 E 34.75 N), its cameras, two districts, and a
morning's checkpoint export in the upper-case compact layout (HPHM, KKBH, JGSJ, CDBH,
CLSD). Deterministic; run `python3 make.py` here to rewrite the files."""
import csv, json, random

LON0, LAT0 = 113.60, 34.74
DX, DY = 600 / 91_400, 600 / 110_950  # metres to degrees at 34.7 N
rnd = random.Random(7)

def pt(i, j):
    return [round(LON0 + i * DX, 7), round(LAT0 + j * DY, 7)]

features = []
for j in range(4):  # east-west roads: one primary avenue, the rest secondary
    props = {"name": f"Weft {j}", "highway": "primary" if j == 1 else "secondary", "lanes": 3 if j == 1 else 2}
    if j == 1:
        props["maxspeed"] = "60"
    features.append({"type": "Feature", "id": f"w{j}", "properties": props,
                     "geometry": {"type": "LineString", "coordinates": [pt(i, j) for i in range(4)]}})
for i in range(4):  # north-south roads; road 3 is one way northbound
    props = {"name": f"Warp {i}", "highway": "tertiary"}
    if i == 3:
        props["oneway"] = "yes"
    features.append({"type": "Feature", "id": f"n{i}", "properties": props,
                     "geometry": {"type": "LineString", "coordinates": [pt(i, j) for j in range(4)]}})
json.dump({"type": "FeatureCollection", "features": features}, open("roads.geojson", "w"), indent=1)

cams = {}
with open("cameras.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["kkbh", "lon", "lat", "name"])
    for i in range(4):
        for j in range(4):
            cid = 4101000000 + 10 * i + j
            lon, lat = pt(i, j)
            # Cameras are mounted a few metres from the centreline.
            lon += rnd.uniform(-8, 8) / 91_400
            lat += rnd.uniform(-8, 8) / 110_950
            cams[(i, j)] = cid
            w.writerow([cid, f"{lon:.7f}", f"{lat:.7f}", f"cam {i}-{j}"])

def square(i0, i1):
    return [[pt(i0, -0.5)[0] - DX / 2, LAT0 - DY], [LON0 + (i1 - 0.5) * DX, LAT0 - DY],
            [LON0 + (i1 - 0.5) * DX, LAT0 + 4 * DY], [pt(i0, 0)[0] - DX / 2, LAT0 + 4 * DY],
            [pt(i0, -0.5)[0] - DX / 2, LAT0 - DY]]
json.dump({"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"name": "二七区"}, "geometry": {"type": "Polygon", "coordinates": [square(0, 2)]}},
    {"type": "Feature", "properties": {"name": "金水区"}, "geometry": {"type": "Polygon", "coordinates": [square(2, 4)]}},
]}, open("districts.geojson", "w"), indent=1)

# A morning: vehicles drive east along a weft (or north up warp 3), passing each camera.
rows = []
for v in range(300):
    plate = ("豫A" if v % 4 else rnd.choice(["豫B", "京A", "鄂Q"])) + "".join(rnd.choice("0123456789ABCDEFGHJK") for _ in range(5))
    t = 7 * 3600 + rnd.randrange(0, 3 * 3600)
    if v % 5 == 0:
        path = [(3, j) for j in range(4)]
    else:
        j = rnd.randrange(4)
        path = [(i, j) for i in range(4)]
    for k, (i, j) in enumerate(path):
        h, m, s = t // 3600, t // 60 % 60, t % 60
        # The separator some platforms put in plates (the mapping takes it out).
        shown = plate if v % 7 else plate[:2] + "·" + plate[2:]
        rows.append([shown, cams[(i, j)], f"20260302{h:02d}{m:02d}{s:02d}", 1 + v % 3, round(rnd.uniform(25, 55), 1)])
        t += int(600 / rnd.uniform(7, 14))
rows.sort(key=lambda r: r[2])
with open("export.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["HPHM", "KKBH", "JGSJ", "CDBH", "CLSD"])
    w.writerows(rows)

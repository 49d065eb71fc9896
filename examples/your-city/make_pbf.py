"""Writes roads.osm.pbf: the same street grid as roads.geojson, as an OpenStreetMap extract
(nodes and ways with highway, maxspeed, oneway and lanes tags, plus a footway that must not
become a road). Needs PyPI `osmium` (pyosmium): python3 -m pip install osmium."""
import json, os
import osmium
from osmium.osm.mutable import Node, Way

roads = json.load(open("roads.geojson"))["features"]
out = "roads.osm.pbf"
if os.path.exists(out):
    os.remove(out)
writer = osmium.SimpleWriter(out)
ids = {}
nodes = []
for f in roads:
    for lon, lat in f["geometry"]["coordinates"]:
        if (lon, lat) not in ids:
            ids[(lon, lat)] = len(ids) + 1
            nodes.append(Node(id=ids[(lon, lat)], location=(lon, lat), version=1))
# A footway cutting diagonally between two crossings: as a road it would link their
# cameras directly.
weft0 = roads[0]["geometry"]["coordinates"]
weft1 = roads[1]["geometry"]["coordinates"]
foot = [tuple(weft0[0]), tuple(weft1[1])]
for n in nodes:
    writer.add_node(n)
for k, f in enumerate(roads):
    tags = {k2: str(v) for k2, v in f["properties"].items()}
    refs = [ids[tuple(c)] for c in f["geometry"]["coordinates"]]
    writer.add_way(Way(id=k + 1, nodes=refs, tags=tags, version=1))
writer.add_way(Way(id=100, nodes=[ids[p] for p in foot], tags={"highway": "footway"}, version=1))
writer.close()

def test_create_and_get(alice_api):
    r = alice_api.post("/api/v1/resources", {"address": "/alice/train", "type": "function", "config": {"code": "abc"}}, format="json")
    assert r.status_code == 201, r.json()
    r = alice_api.get("/api/v1/resources/alice/train")
    assert r.status_code == 200
    assert r.json()["version"] == 1
    assert r["ETag"] == '"1"'

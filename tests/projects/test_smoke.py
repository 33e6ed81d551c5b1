def test_whoami_names_the_token_owner(alice):
    assert alice.ok("/system/whoami") == {"id": "user-alice"}


def test_dx_whoami_prints_the_handle(dx_as):
    dx = dx_as("alice")
    assert dx("whoami").stdout.strip() == "alice"

from __future__ import annotations

from armillary.kit.errors import Unauthorized

# One message for every credential failure: it never says whether the account exists.
INVALID_CREDENTIALS = "Incorrect email or password"


class InvalidCredentials(Unauthorized):
    keep_changes = True  # the failure's audit entry must survive the rollback

    def __init__(self) -> None:
        super().__init__(INVALID_CREDENTIALS)


class RefreshTokenReused(Unauthorized):
    keep_changes = True  # keep the family revocation and its audit entry

    def __init__(self) -> None:
        super().__init__("Invalid refresh token")

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoresponder.settings")
application = get_wsgi_application()

# The open pixel and the click redirect are answered before Django's middleware stack
# (campaigns/fastpath.py explains why; anything unusual still goes through Django).
from campaigns.fastpath import TrackingFastPath  # noqa: E402  (needs the apps loaded above)

application = TrackingFastPath(application)

"""inferlab.sim"""
